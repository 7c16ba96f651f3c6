"""State that would grow with history is bounded by the lateness window, with every value
exactly what keeping it all gives:
- usage DELTAs older than any report still to come are kept as their sum (``settle``): a
  feature fed DELTAs over all time (seats) no longer holds every report it was sent;
- counters of periods no record can land in any more leave memory and checkpoints once
  stored (``retire``): a DAY period a day, per customer, feature and resource, no longer
  stays in every checkpoint for good. ``rebuild`` compares them by their stored values."""

from __future__ import annotations

import random
from pathlib import Path

import msgspec
import pytest
from rich.console import Console

from meterplane.aggregate import aggregator as aggregator_module
from meterplane.aggregate.aggregator import read_checkpoint
from meterplane.aggregate.rebuild import retired_values
from meterplane.commands.rebuild import rebuild
from meterplane.core.catalog import load_catalog
from meterplane.core.counters import KINDS, CounterBook, Outcome, UsageCounter, settle_before
from meterplane.core.settings import load_settings
from meterplane.core.timeutil import iso
from meterplane.ingest.buffer import KIND_EVENTS, KIND_USAGE
from meterplane.plane import EmbeddedPlane
from tests.app.conftest import API_KEY

DAY = 86_400_000_000
LATENESS = 35 * DAY
T0 = 1_793_491_200_000_000  # 2026-11-01T00:00:00Z

# (received, key, timestamp, value, is SET): in order of receipt, each timestamped within
# the lateness window of its receipt, as ingest accepts them
Report = tuple[int, str, int, float, bool]


def _reports(seed: int, n: int, set_share: float) -> list[Report]:
    rng = random.Random(seed)
    received, out = T0, []
    for i in range(n):
        received += rng.randrange(DAY // 2)
        ts = received - rng.randrange(LATENESS)
        value = rng.choice([1, -1, 3, 2.5, 1e-9, -7.25])
        out.append((received, f"r{i}", ts, value, rng.random() < set_share))
    return out


def _apply(book: CounterBook, reports: list[Report]) -> None:
    out = Outcome()
    for _, key, ts, value, is_set in reports:
        book.apply_usage("acme", "seats", key, ts, value, is_set, "", out)


def _counter(book: CounterBook) -> UsageCounter:
    counter = book.counters[("acme", "seats", 0, "")]
    assert isinstance(counter, UsageCounter)
    return counter


@pytest.mark.parametrize(("seed", "set_share"), [(1, 0.0), (2, 0.003), (3, 0.05)])
def test_settling_keeps_every_value_exact_and_the_state_within_the_window(
    seed: int, set_share: float
) -> None:
    reports = _reports(seed, 3000, set_share)
    kept, settled = CounterBook(load_catalog()), CounterBook(load_catalog())
    for report in reports:
        _apply(kept, [report])
        _apply(settled, [report])
        settled.settle(settle_before(report[0], LATENESS))
        assert settled.value("acme", "seats", 0) == kept.value("acme", "seats", 0)  # floats too
    horizon = settle_before(reports[-1][0], LATENESS)
    assert all(d[0] >= horizon for d in _counter(settled).deltas)
    if set_share < 0.01:  # few SETs: keeping every DELTA kept years of them
        assert len(_counter(settled).deltas) * 5 < len(_counter(kept).deltas)


def test_a_settled_counter_restores_and_goes_on_as_the_kept_one() -> None:
    reports = _reports(4, 2000, 0.002)
    first, rest = reports[:1500], reports[1500:]
    kept, settled = CounterBook(load_catalog()), CounterBook(load_catalog())
    _apply(kept, first)
    _apply(settled, first)
    settled.settle(settle_before(first[-1][0], LATENESS))
    state = _counter(settled).state()
    assert len(state) == 3  # [SET, DELTAs, [settled before, ints, float partials]]
    restored = CounterBook(load_catalog())
    restored.restore(msgspec.msgpack.decode(msgspec.msgpack.encode(settled.snapshot())))
    _apply(kept, rest)
    _apply(restored, rest)
    assert restored.value("acme", "seats", 0) == kept.value("acme", "seats", 0)
    # a state written before settling existed (two items) still loads
    assert KINDS["USAGE"](*_counter(kept).state()).value() == kept.value("acme", "seats", 0)


def _plane(data_dir: Path) -> EmbeddedPlane:
    """A plane stepped by hand (no thread)."""
    settings = load_settings(env={}, data_dir=data_dir, api_keys=API_KEY)
    plane = EmbeddedPlane(settings)
    plane.aggregator.recover()
    return plane


def _write(plane: EmbeddedPlane, reports: list[Report]) -> None:
    """Each report in a frame of its own, stamped with its time of receipt."""
    for received, key, ts, value, is_set in reports:
        usage = {
            "customerId": "acme",
            "featureId": "seats",
            "value": value,
            "updateBehavior": "SET" if is_set else "DELTA",
            "timestamp": iso(ts),
            "idempotencyKey": key,
        }
        plane.log.append_sync(KIND_USAGE, received, msgspec.json.encode({"usages": [usage]}))


def test_the_aggregator_settles_at_its_checkpoints_and_a_restart_counts_on_exactly(
    tmp_path: Path,
) -> None:
    reports = _reports(5, 4000, 0.001)
    kept = CounterBook(load_catalog())
    _apply(kept, reports)
    first, rest = reports[:3000], reports[3000:]
    plane = _plane(tmp_path / "data")
    _write(plane, first)
    plane.aggregator.drain()
    cp = read_checkpoint(tmp_path / "data" / "state")
    assert cp is not None
    (row,) = (r for r in cp.counters if r[:2] == ["acme", "seats"])
    deltas = row[6][1]
    horizon = settle_before(first[-1][0], LATENESS)
    assert 0 < len(deltas) < 400  # the last 36 days' reports of 3,000 over 750 days
    assert all(d[0] >= horizon for d in deltas)
    plane.log.close()
    plane.engine.close()
    plane = _plane(tmp_path / "data")  # restarted from the checkpoint
    _write(plane, rest)
    plane.aggregator.drain()
    assert plane.aggregator.book.value("acme", "seats", 0) == kept.value("acme", "seats", 0)
    plane.log.close()
    plane.engine.close()


# ---------------------------------------------------------------- retiring final periods

EVENTS = [("api_call", {"region": "us"}), ("completion", {"tokens": 3, "latency_ms": 1.5})]


def _events(seed: int, n: int) -> list[Report]:
    """Events for initech (DAY periods) in order of receipt over about 200 days, the value
    field unused; each within the lateness window of its receipt."""
    rng = random.Random(seed)
    received, out = T0, []
    for i in range(n):
        received += rng.randrange(DAY // 10)
        out.append((received, f"e{i}", received - rng.randrange(LATENESS), 0, False))
    return out


def _count(book: CounterBook, events: list[Report], out: Outcome | None = None) -> None:
    out = out or Outcome()
    for _, key, ts, _, _ in events:
        name, dims = EVENTS[int(key[1:]) % 2]
        book.apply_event("initech", name, key, ts, dims, f"r{int(key[1:]) % 3}", out)


def test_retired_periods_leave_the_book_and_their_stored_values_complete_it() -> None:
    events = _events(6, 4000)
    kept, retiring = CounterBook(load_catalog()), CounterBook(load_catalog())
    _count(kept, events)
    stored: dict[tuple[str, str, int, str], object] = {}  # the counters table, in short
    for i in range(0, len(events), 20):  # a checkpoint every 20 events
        chunk = events[i : i + 20]
        _count(retiring, chunk)
        for ck in retiring.dirty:
            stored[ck] = retiring.counters[ck].value()
        retiring.dirty.clear()
        retiring.retire(settle_before(chunk[-1][0], LATENESS))
    assert retiring.retired_before == settle_before(events[-1][0], LATENESS)
    assert len(retiring.counters) * 3 < len(kept.counters)
    assert all(end is None or end > retiring.retired_before for end in retiring.period_end.values())
    everything = {ck: stored[ck] for ck in kept.counters if ck not in retiring.counters}
    everything |= {ck: c.value() for ck, c in retiring.counters.items()}
    assert everything == {ck: c.value() for ck, c in kept.counters.items()}


def test_a_count_for_a_retired_period_is_refused_not_started_over() -> None:
    # api_call counts for api-calls (initech: DAY periods) and us-api-calls (not in its
    # plan: all time, never retired)
    book = CounterBook(load_catalog())
    _count(book, [(T0, "e0", T0 - 10 * DAY, 0, False), (T0, "e2", T0, 0, False)])
    book.dirty.clear()
    assert book.retire(T0 - DAY) == 2  # the day 10 days back: customer-wide and r0
    assert {ck[1:] for ck in book.counters if ck[1] == "api-calls"} == {
        ("api-calls", 1_793_439_000_000_000, ""),
        ("api-calls", 1_793_439_000_000_000, "r2"),
    }
    out = Outcome()
    _count(book, [(T0, "e4", T0 - 10 * DAY, 0, False)], out)  # lands in the retired day
    assert (out.retired, out.applied) == (1, 1)  # api-calls refused, us-api-calls counted
    assert not any(ck[1] == "api-calls" and ck[2] < T0 - DAY for ck in book.counters)
    _count(book, [(T0, "e6", T0 + 1, 0, False)], out)  # today's period counts on
    assert (out.retired, out.applied) == (1, 3)
    assert book.value("initech", "api-calls", 1_793_439_000_000_000) == 2


def test_the_aggregator_retires_at_its_checkpoints_and_rebuild_compares_stored_values(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(aggregator_module, "RETIRE_INTERVAL_S", 0.0)
    events = _events(7, 3000)
    kept = CounterBook(load_catalog())
    _count(kept, events)
    data = tmp_path / "data"
    for part in (events[:1500], events[1500:]):  # with a restart between
        plane = _plane(data)
        for chunk in range(0, len(part), 100):  # frames of 100 events, each with its receipt
            batch = part[chunk : chunk + 100]
            body = {
                "events": [
                    {
                        "customerId": "initech",
                        "eventName": EVENTS[int(key[1:]) % 2][0],
                        "idempotencyKey": key,
                        "timestamp": iso(ts),
                        "dimensions": EVENTS[int(key[1:]) % 2][1],
                        "resourceId": f"r{int(key[1:]) % 3}",
                    }
                    for _, key, ts, _, _ in batch
                ]
            }
            plane.log.append_sync(KIND_EVENTS, batch[-1][0], msgspec.json.encode(body))
            plane.aggregator.drain()  # a checkpoint per frame
        book = plane.aggregator.book
        assert plane.aggregator.counted_by["native"] > 0  # the core counted, and kept up
        assert book.retired_before == settle_before(part[-1][0], LATENESS)
        stored = retired_values(plane.engine, book.retired_before)
        assert len(book.counters) * 2 < len(kept.counters)
        plane.log.close()
        plane.engine.close()
    values = {ck: c.value() for ck, c in book.counters.items()}
    assert {ck: stored.get(ck, values.get(ck)) for ck in kept.counters} == {
        ck: c.value() for ck, c in kept.counters.items()
    }
    quiet = Console(quiet=True)
    assert rebuild(data, None, apply=False, console=quiet) == 0
    # a count that lands in a retired period anyway is not counted; rebuild repairs it
    plane = _plane(data)
    late = {"customerId": "initech", "eventName": "api_call", "idempotencyKey": "late"}
    late["timestamp"] = iso(events[0][2])
    plane.log.append_sync(KIND_EVENTS, events[-1][0], msgspec.json.encode({"events": [late]}))
    plane.aggregator.drain()
    plane.log.close()
    plane.engine.close()
    assert rebuild(data, None, apply=False, console=quiet) == 1
    assert rebuild(data, None, apply=True, console=quiet) == 0
    assert rebuild(data, None, apply=False, console=quiet) == 0
