"""Usage periods anchored on the subscription start (DESIGN.md section 4)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from meterplane.core.catalog import ResetPeriod
from meterplane.core.periods import period_bounds
from meterplane.core.timeutil import iso, to_us


def _bounds(reset: ResetPeriod | None, anchor: str, at: str) -> tuple[str | None, str | None]:
    a = to_us(datetime.fromisoformat(anchor))
    t = to_us(datetime.fromisoformat(at))
    start, end = period_bounds(reset, a, t)
    return iso(start), iso(end)


@pytest.mark.parametrize(
    ("at", "start", "end"),
    [
        # Anchor on Jan 31: February's period starts on its last day, March's on the 31st.
        ("2026-02-27T23:59:59+00:00", "2026-01-31T00:00:00Z", "2026-02-28T00:00:00Z"),
        ("2026-02-28T00:00:00+00:00", "2026-02-28T00:00:00Z", "2026-03-31T00:00:00Z"),
        ("2026-03-30T12:00:00+00:00", "2026-02-28T00:00:00Z", "2026-03-31T00:00:00Z"),
        ("2026-04-30T00:00:00+00:00", "2026-04-30T00:00:00Z", "2026-05-31T00:00:00Z"),
        # Leap year: February 2028 has 29 days.
        ("2028-02-29T10:00:00+00:00", "2028-02-29T00:00:00Z", "2028-03-31T00:00:00Z"),
        # Before the anchor, periods count backwards from it.
        ("2025-12-31T00:00:00+00:00", "2025-12-31T00:00:00Z", "2026-01-31T00:00:00Z"),
        ("2025-12-30T23:00:00+00:00", "2025-11-30T00:00:00Z", "2025-12-31T00:00:00Z"),
    ],
)
def test_monthly_anchor_on_the_31st(at: str, start: str, end: str) -> None:
    assert _bounds(ResetPeriod.MONTH, "2026-01-31T00:00:00+00:00", at) == (start, end)


def test_yearly_anchor_on_leap_day_falls_back_to_feb_28() -> None:
    anchor = "2024-02-29T00:00:00+00:00"
    assert _bounds(ResetPeriod.YEAR, anchor, "2025-03-01T00:00:00+00:00") == (
        "2025-02-28T00:00:00Z",
        "2026-02-28T00:00:00Z",
    )
    assert _bounds(ResetPeriod.YEAR, anchor, "2028-02-29T00:00:00+00:00") == (
        "2028-02-29T00:00:00Z",
        "2029-02-28T00:00:00Z",
    )
    assert _bounds(ResetPeriod.YEAR, anchor, "2028-02-28T23:59:59+00:00") == (
        "2027-02-28T00:00:00Z",
        "2028-02-29T00:00:00Z",
    )


def test_hourly_periods_follow_the_anchor_minute() -> None:
    anchor = "2026-10-15T09:30:00+00:00"
    assert _bounds(ResetPeriod.HOUR, anchor, "2026-11-21T07:29:59.999999+00:00") == (
        "2026-11-21T06:30:00Z",
        "2026-11-21T07:30:00Z",
    )
    assert _bounds(ResetPeriod.HOUR, anchor, "2026-11-21T07:30:00+00:00") == (
        "2026-11-21T07:30:00Z",
        "2026-11-21T08:30:00Z",
    )


def test_day_and_week_periods_are_fixed_lengths_from_the_anchor() -> None:
    anchor = "2026-10-15T09:30:00+00:00"
    assert _bounds(ResetPeriod.DAY, anchor, "2026-11-21T09:29:00+00:00") == (
        "2026-11-20T09:30:00Z",
        "2026-11-21T09:30:00Z",
    )
    # 2026-10-15 is a Thursday: weeks run Thursday 09:30 to Thursday 09:30.
    assert _bounds(ResetPeriod.WEEK, anchor, "2026-11-21T00:00:00+00:00") == (
        "2026-11-19T09:30:00Z",
        "2026-11-26T09:30:00Z",
    )


def test_no_reset_period_is_all_time() -> None:
    assert period_bounds(None, to_us(datetime(2026, 1, 1, tzinfo=UTC)), 123) == (0, None)


def test_offsets_are_converted_to_utc() -> None:
    # 2026-03-01T00:30+02:00 is 2026-02-28T22:30Z: still February's period.
    assert _bounds(ResetPeriod.MONTH, "2026-01-31T00:00:00+00:00", "2026-03-01T00:30:00+02:00") == (
        "2026-02-28T00:00:00Z",
        "2026-03-31T00:00:00Z",
    )
