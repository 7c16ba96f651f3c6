"""Freshness on the production engines: from a 202 to the event showing in a check.

A single-node KRaft broker, ``meterplane ingest``, the Flink job (local mode, mini-batch
100 ms, checkpoints every second) and ``meterplane entitlements``, all on this machine.
Background load: ``--rate`` events/s in 500-event batches for other customers. Probes:
every 200 ms one event for customer ``acme``; from its 202 the bench polls the check of
``api-calls`` for ``acme`` until ``currentUsage`` counts it. ``p99_ms`` over the probes.
Run: ``python bench/freshness_flink.py [--quick] [--rate N]``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import httpx
import msgspec
from _common import emit, pct

from meterplane.core.catalog import load_catalog
from meterplane.core.timeutil import now_us
from meterplane.simulate import generate
from meterplane.testing import engines

API_KEY = "bench-fresh-key-0123456789abcdef"
HEADERS = {"X-API-KEY": API_KEY}


def _background(url: str, rate: int, stop: threading.Event, sent: list[int]) -> None:
    traffic = generate(load_catalog(), now_us(), n_events=60_000, batch_size=500, late_share=0)
    bodies = []
    for body in traffic.event_batches:
        batch = msgspec.json.decode(body)
        batch["events"] = [e for e in batch["events"] if e["customerId"] != "acme"]
        bodies.append(msgspec.json.encode(batch))
    interval = 500 / rate
    with httpx.Client(base_url=url, headers=HEADERS, timeout=30) as client:
        i = 0
        next_at = time.monotonic()
        while not stop.is_set():
            body = bodies[i % len(bodies)]
            if i >= len(bodies):  # later rounds: fresh idempotency keys
                body = body.replace(b'"b', f'"r{i // len(bodies)}b'.encode())
            r = client.post("/api/v1/events", content=body)
            if r.status_code == 202:
                sent[0] += r.json()["accepted"]
            i += 1
            next_at += interval
            time.sleep(max(0.0, next_at - time.monotonic()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer probes")
    parser.add_argument("--rate", type=int, default=1000, help="background events per second")
    parser.add_argument("--work-dir", help="keep logs and checkpoints here (default: temporary)")
    args = parser.parse_args()
    probes = 40 if args.quick else 150
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.work_dir or tmp)
        with engines.KafkaBroker(work / "kafka") as broker:
            broker.create_topic("events", 4)
            broker.create_topic("counters", 4, {"cleanup.policy": "compact"})
            job = engines.flink_job(work / "flink", broker.bootstrap, mini_batch_ms=100)
            ingest, ingest_url = engines.meterplane_service(
                "ingest", work, broker.bootstrap, API_KEY
            )
            ents, ents_url = engines.meterplane_service(
                "entitlements", work, broker.bootstrap, API_KEY
            )
            stop = threading.Event()
            sent = [0]
            job.start()
            ingest.start()
            ents.start()
            try:
                engines.wait_ready(ingest_url, ingest)
                engines.wait_ready(ents_url, ents)
                loader = threading.Thread(
                    target=_background, args=(ingest_url, args.rate, stop, sent), daemon=True
                )
                loader.start()
                latencies = _probe(ingest_url, ents_url, probes, job)
            finally:
                stop.set()
                job.kill()
                ingest.stop()
                ents.stop()
    print(
        f"{len(latencies)} probes, background {sent[0]:,} events, "
        f"p50 {pct(latencies, 0.5):.0f} ms, p99 {pct(latencies, 0.99):.0f} ms",
        file=sys.stderr,
    )
    emit(
        {
            "bench": "freshness_flink",
            "probes": len(latencies),
            "background_events_per_s": args.rate,
            "mini_batch_ms": 100,
            "p50_ms": round(pct(latencies, 0.5), 1),
            "p99_ms": round(pct(latencies, 0.99), 1),
            "max_ms": round(max(latencies), 1),
        }
    )


def _current(client: httpx.Client) -> float:
    r = client.get("/api/v1/customers/acme/entitlements/check", params={"featureId": "api-calls"})
    value = r.json()["currentUsage"]
    return float(value or 0)


def _probe(ingest_url: str, ents_url: str, probes: int, job: engines.ManagedProcess) -> list[float]:
    latencies: list[float] = []
    with (
        httpx.Client(base_url=ingest_url, headers=HEADERS, timeout=30) as ingest,
        httpx.Client(base_url=ents_url, headers=HEADERS, timeout=30) as ents,
    ):
        # The first probe also waits for the job to start; it is not measured.
        warm = {"customerId": "acme", "eventName": "api_call", "idempotencyKey": "warm"}
        assert ingest.post("/api/v1/events", json={"events": [warm]}).status_code == 202
        deadline = time.monotonic() + 300
        while _current(ents) < 1:
            if not job.running or time.monotonic() > deadline:
                raise SystemExit(f"Flink job not counting:\n{job.output()[-3000:]}")
            time.sleep(0.1)
        # Let the background load and the JVM settle, then a few unmeasured probes.
        time.sleep(10)
        expected = _current(ents)
        for i in range(-5, probes):
            event = {"customerId": "acme", "eventName": "api_call", "idempotencyKey": f"p{i}"}
            r = ingest.post("/api/v1/events", json={"events": [event]})
            acked = time.perf_counter()
            if r.status_code != 202:
                raise SystemExit(f"probe {i}: {r.status_code} {r.text}")
            expected += 1
            while _current(ents) < expected:
                if time.perf_counter() - acked > 30:
                    # Counted as a 30 s sample (the p99 shows it) rather than ending the run.
                    print(f"probe {i}: not visible after 30 s", file=sys.stderr)
                    break
                time.sleep(0.005)
            if i >= 0:
                latencies.append((time.perf_counter() - acked) * 1000)
            time.sleep(0.2)
    return latencies


if __name__ == "__main__":
    main()
