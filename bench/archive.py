"""Archive throughput: rows/s moved from the hot store (chdb) to the cold tier — export,
zstd Parquet, upload under the key, read back and verify, delete — to a local directory
and to S3 with SSE-KMS on moto's server (loopback).

Run: ``python bench/archive.py [--quick]``; the last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

from _archive_data import fill

from meterplane.archive.exporter import Archiver
from meterplane.archive.stores import FileStore, open_store
from meterplane.core.storage import ChdbEngine, migrate
from meterplane.testing.objectstores import MotoServer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a run under a minute")
    args = parser.parse_args()
    rows, days = (100_000, 10) if args.quick else (1_000_000, 30)
    work = Path(tempfile.mkdtemp(prefix="bench-archive-"))
    result: dict[str, object] = {"bench": "archive", "rows": rows, "days": days}
    engine = ChdbEngine(work / "chdb")
    try:
        migrate(engine)
        with MotoServer(work / "moto") as moto:
            os.environ.update(moto.env())
            import boto3  # noqa: PLC0415 - after the endpoint variables are set

            boto3.client("s3").create_bucket(Bucket="bench-archive")
            key = boto3.client("kms").create_key()["KeyMetadata"]["KeyId"]
            targets = {
                "file": FileStore(work / "cold"),
                "s3_sse_kms": open_store("s3://bench-archive/cold", key),
            }
            for name, store in targets.items():
                fill(engine, rows, days, age_days=40)
                started = time.monotonic()
                report = Archiver(engine, store, hot_retention_days=30).run()
                seconds = time.monotonic() - started
                left = engine.query_arrow("SELECT count() AS n FROM events").column("n")[0]
                if report.rows != rows or left.as_py() != 0:
                    raise SystemExit(f"{name}: archived {report.rows} of {rows}, {left} left")
                result[f"{name}_rows_per_s"] = round(rows / seconds)
                result[f"{name}_mb"] = round(report.bytes / 1e6, 2)
                print(f"{name}: {report.summary()}")
    finally:
        engine.close()
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
