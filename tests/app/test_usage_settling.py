"""Usage DELTAs older than any report still to come are kept as their sum (``settle``):
every value stays exactly what keeping each DELTA gives, and the state no longer grows
with every report a feature was ever sent (seats count over all time)."""

from __future__ import annotations

import random
from pathlib import Path

import msgspec
import pytest

from meterplane.aggregate.aggregator import read_checkpoint
from meterplane.core.catalog import load_catalog
from meterplane.core.counters import KINDS, CounterBook, Outcome, UsageCounter, settle_before
from meterplane.core.settings import load_settings
from meterplane.core.timeutil import iso
from meterplane.ingest.buffer import KIND_USAGE
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
