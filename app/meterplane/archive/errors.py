"""Typed errors of the archiver. Each message is one line an operator can act on."""

from __future__ import annotations

from meterplane.core.errors import MeterplaneError


class ArchiveError(MeterplaneError):
    """The archive run stopped; rows of the unit being archived stay in the hot store."""


class StoreUnavailable(ArchiveError):
    """The object store (bucket, container, directory) cannot be reached or used."""


class KeyUnusable(ArchiveError):
    """The customer's key is missing, disabled, or not the one the store applied."""


class VerificationFailed(ArchiveError):
    """An uploaded object did not read back as written (size, checksum, rows)."""


class ColdCorrupt(ArchiveError):
    """An archived object disagrees with its manifest (the cold tier was altered)."""
