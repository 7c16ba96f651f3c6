"""What the counter stream keeps of the counters topic (no broker: records applied
directly). The topic is replayed from offset 0, so it holds every period ever published;
the book keeps only the periods a check can still ask about."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from meterplane.core.catalog import load_catalog
from meterplane.core.counters import SETTLE_MARGIN_US
from meterplane.kafka import counters as counters_module
from meterplane.kafka.counters import CounterStream
from meterplane.kafka.records import CounterRecord

DAY = 86_400_000_000
NOW = 1_793_491_200_000_000  # 2026-11-01T00:00:00Z


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> int:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def stream(clock: Clock) -> Iterator[CounterStream]:
    # A consumer that is never asked to fetch (and not to log its refused connection).
    s = CounterStream("127.0.0.1:9", load_catalog(), clock=clock, extra_config={"log_level": 0})
    yield s
    s.stop()


def _record(start: int, end: int | None, value: int, version: int = 1) -> CounterRecord:
    return CounterRecord("acme", "api-calls", start, "", end, value, version, NOW)


def test_records_of_final_past_periods_are_left_out(stream: CounterStream) -> None:
    final = NOW - 35 * DAY - SETTLE_MARGIN_US  # periods ending by then can change no more
    assert not stream.apply(_record(final - DAY, final, 5))
    assert stream.apply(_record(final, final + DAY, 6))  # ended later: late records may come
    assert stream.apply(_record(NOW, NOW + DAY, 7))  # the current period
    assert stream.apply(_record(0, None, 8))  # all time never ends
    assert stream.final == 1
    assert stream.value("acme", "api-calls", final - DAY) is None
    assert stream.value("acme", "api-calls", final) == 6
    assert stream.value("acme", "api-calls", NOW) == 7
    assert stream.value("acme", "api-calls", 0) == 8


def test_periods_that_become_final_are_swept_hourly(
    stream: CounterStream, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    stream.apply(_record(NOW, NOW + DAY, 7))
    stream.apply(_record(0, None, 8))
    stream._sweep()
    clock.now += 37 * DAY  # the day is long past
    stream._sweep()
    assert stream.value("acme", "api-calls", NOW) is None
    assert stream.value("acme", "api-calls", 0) == 8
    monkeypatch.setattr(counters_module, "SWEEP_INTERVAL_US", 10**18)
    stream.apply(_record(NOW + 2 * DAY, NOW + 3 * DAY, 9))
    clock.now += 37 * DAY
    stream._sweep()  # not yet due: kept until the next sweep
    assert stream.value("acme", "api-calls", NOW + 2 * DAY) == 9
