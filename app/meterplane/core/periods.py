"""Usage periods anchored on the subscription's start (DESIGN.md section 4).

HOUR, DAY and WEEK are fixed lengths counted from the anchor. MONTH and YEAR step in
calendar units from the anchor itself, never from the previous boundary, so an anchor on
the 31st falls on the last day of shorter months and comes back to the 31st afterwards
(Jan 31 → Feb 28/29 → Mar 31). All in UTC; instants are microseconds since the epoch.
"""

from __future__ import annotations

import calendar
from datetime import datetime

from meterplane.core.catalog import ResetPeriod
from meterplane.core.timeutil import US_PER_S, from_us, to_us

ALL_TIME: tuple[int, None] = (0, None)
_FIXED = {
    ResetPeriod.HOUR: 3600 * US_PER_S,
    ResetPeriod.DAY: 86_400 * US_PER_S,
    ResetPeriod.WEEK: 7 * 86_400 * US_PER_S,
}


def add_months(anchor: datetime, months: int) -> datetime:
    """``anchor`` moved by whole months, the day clamped to the target month's length."""
    total = anchor.year * 12 + (anchor.month - 1) + months
    year, month = divmod(total, 12)
    month += 1
    day = min(anchor.day, calendar.monthrange(year, month)[1])
    return anchor.replace(year=year, month=month, day=day)


def _calendar_bounds(step: int, anchor_us: int, at_us: int) -> tuple[int, int]:
    anchor, at = from_us(anchor_us), from_us(at_us)
    n = ((at.year - anchor.year) * 12 + (at.month - anchor.month)) // step
    start = add_months(anchor, n * step)
    while start > at:
        n -= 1
        start = add_months(anchor, n * step)
    end = add_months(anchor, (n + 1) * step)
    while end <= at:
        n += 1
        start, end = end, add_months(anchor, (n + 1) * step)
    return to_us(start), to_us(end)


def period_bounds(reset: ResetPeriod | None, anchor_us: int, at_us: int) -> tuple[int, int | None]:
    """The ``[start, end)`` of the period containing ``at_us``; ``(0, None)`` for all time."""
    if reset is None:
        return ALL_TIME
    fixed = _FIXED.get(reset)
    if fixed is not None:
        k = (at_us - anchor_us) // fixed  # floor division: also right before the anchor
        start = anchor_us + k * fixed
        return start, start + fixed
    step = 12 if reset is ResetPeriod.YEAR else 1
    return _calendar_bounds(step, anchor_us, at_us)
