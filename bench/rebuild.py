"""Rebuild throughput: events/s recomputed into counters from hot (chdb) and cold
(archived Parquet) rows together, deduplicated across both — what ``meterplane rebuild``
does before comparing with the live counters.

Run: ``python bench/rebuild.py [--quick]``; the last line is one JSON object.
"""

from __future__ import annotations

import argparse
import itertools
import json
import shutil
import tempfile
import time
from pathlib import Path

from _archive_data import fill

from meterplane.aggregate.rebuild import hot_batches, recompute
from meterplane.archive.cold import rebuild_batches
from meterplane.archive.exporter import Archiver
from meterplane.archive.stores import FileStore
from meterplane.core.catalog import load_catalog
from meterplane.core.storage import ChdbEngine, migrate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a run under a minute")
    args = parser.parse_args()
    rows = 100_000 if args.quick else 1_000_000
    work = Path(tempfile.mkdtemp(prefix="bench-rebuild-"))
    engine = ChdbEngine(work / "chdb")
    try:
        migrate(engine)
        # Half the events are old enough to archive (cold), half are recent (hot).
        cold = rows // 2
        fill(engine, cold, days=10, age_days=40, seed=1)
        store = FileStore(work / "cold")
        Archiver(engine, store, hot_retention_days=30).run()
        end = fill(engine, rows - cold, days=10, age_days=0, seed=2, first=cold)
        catalog = load_catalog(None)
        started = time.monotonic()
        book, applied = recompute(
            catalog,
            itertools.chain(hot_batches(engine, end), rebuild_batches(store, end)),
        )
        seconds = time.monotonic() - started
    finally:
        engine.close()
        shutil.rmtree(work, ignore_errors=True)
    if applied != rows:
        raise SystemExit(f"recomputed {applied} events, expected {rows}")
    print(f"rebuilt {len(book.counters)} counters from {applied} events in {seconds:.2f}s")
    print(
        json.dumps(
            {
                "bench": "rebuild",
                "events": applied,
                "hot": rows - cold,
                "cold": cold,
                "counters": len(book.counters),
                "events_per_s": round(applied / seconds),
            }
        )
    )


if __name__ == "__main__":
    main()
