"""Typed domain errors. ``meterplane.http.errors`` maps each to one HTTP response."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any


def field_path(loc: Sequence[str | int]) -> str:
    """A validation error's location as the messages write it: ``plans[1].entitlements.x``."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else f".{part}" if out else str(part)
    return out


class MeterplaneError(Exception):
    """Base of every error this package raises on purpose."""


@dataclass(frozen=True)
class ItemError:
    """One problem with one item of a batch: ``index`` into the batch, ``field`` path."""

    index: int | None
    field: str
    message: str

    def as_dict(self) -> dict[str, Any]:
        """JSON form used in the ``details`` of an error response."""
        return {"index": self.index, "field": self.field, "message": self.message}


@dataclass
class InvalidBatch(MeterplaneError):
    """A batch had invalid items; nothing of it was stored."""

    details: list[ItemError] = field(default_factory=list)

    def __str__(self) -> str:
        return f"{len(self.details)} invalid item(s): " + "; ".join(
            f"{d.field if d.index is None else f'[{d.index}].{d.field}'}: {d.message}"
            for d in self.details[:5]
        )


class MalformedBody(MeterplaneError):
    """The body is not JSON, or not UTF-8."""


class TooLarge(MeterplaneError):
    """Too many items, or a body over the size limit."""


class Unauthorized(MeterplaneError):
    """Missing or unknown API key."""


class BufferUnavailable(MeterplaneError):
    """The durable buffer cannot take the batch now; the client should retry later."""

    def __init__(self, message: str, retry_after_s: int = 1) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class ConfigError(MeterplaneError):
    """A setting or a catalog file is invalid; the message names the setting or path."""


class DataDirInUse(ConfigError):
    """Another meterplane process holds the data directory (its log's lock)."""
