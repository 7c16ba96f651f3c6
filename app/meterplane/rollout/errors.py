"""Typed errors of the rollout."""

from __future__ import annotations


class RolloutError(Exception):
    """A rollout cannot be planned or started (bad stack file, unknown stack, bad flag)."""
