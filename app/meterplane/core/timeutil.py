"""UTC time helpers. Internally every instant is an ``int`` of microseconds since the epoch:
exact, hashable, cheap to compare and identical across the embedded and Flink paths."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
US_PER_S = 1_000_000
ONE_US = timedelta(microseconds=1)


def now_us() -> int:
    """The current wall-clock time in microseconds since the epoch."""
    return time.time_ns() // 1000


def to_us(dt: datetime) -> int:
    """An aware datetime as microseconds since the epoch (exact, no float rounding)."""
    if dt.tzinfo is None:
        raise ValueError("naive datetime: an offset is required")
    return (dt - EPOCH) // ONE_US


def from_us(us: int) -> datetime:
    """Microseconds since the epoch as an aware UTC datetime."""
    return EPOCH + timedelta(microseconds=us)


def iso(us: int | None) -> str | None:
    """RFC 3339 text with a ``Z`` offset, or None."""
    if us is None:
        return None
    return from_us(us).isoformat().replace("+00:00", "Z")
