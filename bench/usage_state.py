"""What a feature fed only usage DELTAs (seats, over all time) costs the aggregator's
checkpoint: its counter's state, kept DELTA by DELTA, against the same state settled
(``UsageCounter.settle``: the DELTAs older than any report still to come kept as one sum).

One report a minute for a year, received in order, each timestamped up to 35 days before
its receipt. Both books take the same reports; the settled one settles at each simulated
checkpoint, as the aggregator does. Printed: the DELTAs each holds at the end, the
checkpoint's size (msgpack, as ``write_checkpoint`` encodes it) and the median time to
snapshot and encode it (what each checkpoint costs the aggregator thread, under the
interpreter lock), and both values, which must be equal.
Run: ``python bench/usage_state.py [--quick]``; the last line is one JSON object.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

import msgspec

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import emit, median

from meterplane.core.catalog import load_catalog
from meterplane.core.counters import CounterBook, Outcome, UsageCounter, settle_before

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a run under 30 s")
    args = parser.parse_args()
    days = 60 if args.quick else 365
    rng = random.Random(1)
    kept, settled = CounterBook(load_catalog()), CounterBook(load_catalog())
    out = Outcome()
    for minute in range(days * 1440):
        received = T0 + minute * MINUTE
        ts = received - rng.randrange(LATENESS)
        value = rng.choice([1, -1, 2])
        for book in (kept, settled):
            book.apply_usage("acme", "seats", f"d{minute}", ts, value, False, "", out)
        if minute % 60 == 0:  # the aggregator checkpoints far more often; hourly is enough here
            settled.settle(settle_before(received, LATENESS))
    settled.settle(settle_before(received, LATENESS))
    rows = {}
    for name, book in (("kept", kept), ("settled", settled)):
        counter = book.counters[("acme", "seats", 0, "")]
        assert isinstance(counter, UsageCounter)
        size, ms = _checkpoint_cost(book, 5 if args.quick else 9)
        rows[name] = (len(counter.deltas), size, ms, book.value("acme", "seats", 0))
        print(f"{name:8} {rows[name][0]:>8} DELTAs  {size:>10,} B  {ms:8.1f} ms", file=sys.stderr)
    assert rows["kept"][3] == rows["settled"][3]
    emit(
        {
            "bench": "usage_state",
            "reports": days * 1440,
            "kept_deltas": rows["kept"][0],
            "settled_deltas": rows["settled"][0],
            "kept_checkpoint_bytes": rows["kept"][1],
            "settled_checkpoint_bytes": rows["settled"][1],
            "kept_checkpoint_ms": round(rows["kept"][2], 2),
            "settled_checkpoint_ms": round(rows["settled"][2], 2),
            "checkpoint_ms_ratio": round(rows["settled"][2] / rows["kept"][2], 3),
            "values_equal": rows["kept"][3] == rows["settled"][3],
        }
    )


if __name__ == "__main__":
    main()
