"""What a year of history costs the aggregator's checkpoint, with the state kept whole
(as before) against the state bounded by the lateness window, in two parts:

- ``usage``: a feature fed only usage DELTAs (seats, over all time), one report a minute,
  each timestamped up to 35 days before its receipt; bounded, the DELTAs older than any
  report still to come are kept as one exact sum (``UsageCounter.settle``).
- ``periods``: 100 customers on a plan with DAY periods, an event an hour each, on one of
  three resources; bounded, the counters of periods no record can land in any more leave
  the book once stored (``CounterBook.retire``).

Both books take the same records, in order of receipt; the bounded one settles and
retires at each simulated hour, as the aggregator's checkpoints do. Printed per part: what
each book holds at the end, the checkpoint's size (msgpack, as ``write_checkpoint`` encodes
it), the median time to snapshot and encode it (what every checkpoint costs the aggregator
thread, under the interpreter lock), and whether the values agree (for ``periods``, the
retired counters by the values stored for them).
Run: ``python bench/bounded_state.py [--quick]``; the last line is one JSON object.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

import msgspec
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import emit, median

from meterplane.core.catalog import DEFAULT_CATALOG, Catalog, load_catalog, parse_catalog
from meterplane.core.counters import (
    CounterBook,
    CounterKey,
    Number,
    Outcome,
    UsageCounter,
    settle_before,
)

MINUTE = 60_000_000
DAY = 1440 * MINUTE
LATENESS = 35 * DAY
T0 = 1_767_225_600_000_000  # 2026-01-01T00:00:00Z


def _checkpoint_cost(book: CounterBook, repeats: int) -> tuple[int, float]:
    """(bytes, median ms) of snapshotting and encoding the book."""
    times, size = [], 0
    for _ in range(repeats):
        t0 = time.perf_counter()
        size = len(msgspec.msgpack.encode(book.snapshot()))
        times.append((time.perf_counter() - t0) * 1000)
    return size, median(times)


def _deltas(book: CounterBook) -> int:
    counter = book.counters[("acme", "seats", 0, "")]
    assert isinstance(counter, UsageCounter)
    return len(counter.deltas)


def _usage(days: int) -> tuple[CounterBook, CounterBook]:
    """(kept, bounded) books after a DELTA a minute for ``days``; the bounded one settled."""
    rng = random.Random(1)
    kept, bounded = CounterBook(load_catalog()), CounterBook(load_catalog())
    out = Outcome()
    received = T0
    for minute in range(days * 1440):
        received = T0 + minute * MINUTE
        ts = received - rng.randrange(LATENESS)
        value = rng.choice([1, -1, 2])
        for book in (kept, bounded):
            book.apply_usage("acme", "seats", f"d{minute}", ts, value, False, "", out)
        if minute % 60 == 0:
            bounded.settle(settle_before(received, LATENESS))
    bounded.settle(settle_before(received, LATENESS))
    return kept, bounded


def _daily_catalog() -> Catalog:
    """The sample catalog with 100 more customers on the free plan (api-calls per DAY)."""
    doc = yaml.safe_load(DEFAULT_CATALOG.read_text())
    start = "2026-01-01T00:00:00Z"
    doc["customers"] += [
        {"id": f"c{i}", "subscription": {"planId": "free", "startDate": start}} for i in range(100)
    ]
    return parse_catalog(doc)


def _periods(days: int) -> tuple[CounterBook, CounterBook, dict[CounterKey, Number | None]]:
    """(kept, bounded, stored) after an event an hour per customer for ``days``; the
    bounded book retires hourly what its stored values (as the counters table) hold."""
    rng = random.Random(2)
    catalog = _daily_catalog()
    kept, bounded = CounterBook(catalog), CounterBook(catalog)
    stored: dict[CounterKey, Number | None] = {}
    out = Outcome()
    received = T0
    for hour in range(days * 24):
        received = T0 + hour * 60 * MINUTE
        for c in range(100):
            ts = received - rng.randrange(LATENESS)
            for book in (kept, bounded):
                book.apply_event(f"c{c}", "api_call", f"{hour}-{c}", ts, {}, f"r{c % 3}", out)
        for ck in bounded.dirty:  # a checkpoint: dirty counters stored, then retired
            stored[ck] = bounded.counters[ck].value()
        bounded.dirty.clear()
        bounded.retire(settle_before(received, LATENESS))
    return kept, bounded, stored


def _row(book: CounterBook, held: int, repeats: int) -> dict[str, float]:
    size, ms = _checkpoint_cost(book, repeats)
    return {"held": held, "checkpoint_bytes": size, "checkpoint_ms": round(ms, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a run under a minute")
    args = parser.parse_args()
    days, repeats = (60, 5) if args.quick else (365, 9)
    result: dict[str, object] = {"bench": "bounded_state", "days": days}
    kept, bounded = _usage(days)
    usage = {
        "kept": _row(kept, _deltas(kept), repeats),
        "bounded": _row(bounded, _deltas(bounded), repeats),
    }
    usage_equal = kept.value("acme", "seats", 0) == bounded.value("acme", "seats", 0)
    kept, bounded, stored = _periods(days)
    periods = {
        "kept": _row(kept, len(kept.counters), repeats),
        "bounded": _row(bounded, len(bounded.counters), repeats),
    }
    live = {ck: c.value() for ck, c in bounded.counters.items()}
    periods_equal = {ck: live.get(ck, stored.get(ck)) for ck in kept.counters} == {
        ck: c.value() for ck, c in kept.counters.items()
    }
    for part, rows, equal in (("usage", usage, usage_equal), ("periods", periods, periods_equal)):
        for name, row in rows.items():
            print(
                f"{part:8} {name:8} holds {row['held']:>8,}  checkpoint "
                f"{row['checkpoint_bytes']:>12,} B {row['checkpoint_ms']:9.1f} ms",
                file=sys.stderr,
            )
        ratio = rows["bounded"]["checkpoint_ms"] / rows["kept"]["checkpoint_ms"]
        result[part] = {**rows, "checkpoint_ms_ratio": round(ratio, 3), "values_equal": equal}
    emit(result)
    if not (usage_equal and periods_equal):
        raise SystemExit("bounded state gave other values than the whole state")


if __name__ == "__main__":
    main()
