"""Freshness: from a 202 to the event showing in a check, under ingest load.

A background load (the Go generator posting 1,000-event batches for other customers)
keeps the aggregator busy while a probe posts one event at a time for its own customer
and polls the check until ``currentUsage`` moves. Reports percentiles over the probes.
Run: ``python bench/freshness.py [--quick]``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import httpx
from _common import emit, loadgen, pct, serve, write_bodies

from meterplane.core.catalog import load_catalog
from meterplane.core.timeutil import now_us
from meterplane.simulate import generate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a run under 30 s")
    args = parser.parse_args()
    probes = 60 if args.quick else 300
    catalog = load_catalog()
    background = generate(catalog, now_us(), n_events=(100 if args.quick else 400) * 1000)
    samples: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        write_bodies(work / "bg.bin", background.event_batches)
        with serve(work / "plane") as (base, key, _):
            load = subprocess.Popen(
                [
                    str(loadgen()),
                    "post",
                    "-url",
                    f"{base}/api/v1/events",
                    "-bodies",
                    str(work / "bg.bin"),
                    "-concurrency",
                    "2",
                    "-header",
                    f"X-API-KEY:{key}",
                ],
                stdout=subprocess.PIPE,
                text=True,
            )
            headers = {"X-API-KEY": key}
            check = "/api/v1/customers/umbrella/entitlements/check"
            with httpx.Client(base_url=base, headers=headers, timeout=10) as http:
                seen = http.get(check, params={"featureId": "seats", "requestedUsage": 0}).json()
                current = seen["currentUsage"]
                for i in range(probes):
                    body = json.dumps(
                        {
                            "usages": [
                                {
                                    "customerId": "umbrella",
                                    "featureId": "seats",
                                    "value": 1,
                                    "idempotencyKey": f"probe-{i}",
                                }
                            ]
                        }
                    )
                    r = http.post("/api/v1/usage", content=body)
                    acked = time.perf_counter()
                    assert r.status_code == 202, r.text
                    while True:
                        d = http.get(check, params={"featureId": "seats", "requestedUsage": 0})
                        if d.json()["currentUsage"] > current:
                            samples.append((time.perf_counter() - acked) * 1000)
                            current = d.json()["currentUsage"]
                            break
                        if time.perf_counter() - acked > 10:
                            raise SystemExit(f"probe {i} not visible after 10 s")
                        time.sleep(0.0005)
            bg = json.loads(load.communicate()[0].strip().splitlines()[-1])
    emit(
        {
            "bench": "freshness",
            "probes": len(samples),
            "p50_ms": round(pct(samples, 0.5), 2),
            "p99_ms": round(pct(samples, 0.99), 2),
            "max_ms": round(max(samples), 2),
            "background_events_per_s": round(bg["requests"] * 1000 / bg["seconds"]),
        }
    )


if __name__ == "__main__":
    main()
