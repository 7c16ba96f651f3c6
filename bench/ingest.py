"""Ingest throughput: HTTP with 1,000-event batches acked after fsync, against the raw path.

``events_per_s`` counts acks (durable); ``aggregated_events_per_s`` the rate until every
acked event was also counted (aggregation runs behind ingest and catches up between
bursts). ``raw_events_per_s`` is the same ingest work without HTTP, measured in the same
run: parse and validate each body, then append it durably to the log with the same
concurrency (so it enjoys the same group commit). ``ratio`` = HTTP / raw.
``ingest_only_events_per_s`` is the same HTTP load against ``bench/_ingest_only.py``:
``serve``'s ingest with no aggregator running, which shows what counting in the same
process (one interpreter lock) takes from the ack rate; ``ingest_only_ratio`` = that / raw.
CPU per event, steadier than rates on a noisy machine: ``cpu_us_per_event`` is the
``serve`` process's CPU time (user + system, ``/proc/<pid>/stat``) from the first request
until every event is counted, over the events; ``ingest_only_cpu_us_per_event`` the same
for the ingest-only server until its last ack; ``raw_cpu_us_per_event`` the raw path's
(this process's CPU time while it runs). Their differences are what HTTP and counting cost.
``request_thread_cpu_us_per_event`` and ``aggregator_cpu_us_per_event`` split ``serve``'s
between the thread that serves requests and the one that counts (``/proc/<pid>/task``),
the two that share the interpreter lock. ``host_steal_pct`` (median over the timed
spans of all three) and ``host_steal_max_pct``: the share of the machine's CPU time the
hypervisor took during them (``/proc/stat``), the host's condition the rates were
measured under.
Five rounds alternate the three; the figures are medians. Each round sends 600 batches:
long enough for the aggregator's checkpoints (every second) to store raw rows while
requests are still arriving, so the ack rate is the one under sustained load, not a
burst's that leaves the counting for after it.
Run: ``python bench/ingest.py [--quick]``.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    acked_events_per_s,
    cpu_s,
    emit,
    median,
    run_loadgen,
    serve,
    stolen,
    thread_cpu_s,
    write_bodies,
)

from meterplane.core.catalog import load_catalog
from meterplane.core.model import TimeWindow, decode_events
from meterplane.core.timeutil import now_us
from meterplane.ingest.buffer import KIND_EVENTS, LocalLog
from meterplane.simulate import generate

CONCURRENCY = 8


async def _raw(bodies: list[bytes], directory: Path) -> tuple[float, float]:
    """Events per second and CPU µs per event of parse + durable append, no HTTP."""
    log = LocalLog(directory, max_backlog_bytes=1 << 40)
    window = TimeWindow()
    queue = list(reversed(bodies))

    async def worker() -> None:
        while queue:
            body = queue.pop()
            received = now_us()
            decode_events(body, received, window)
            await log.append(KIND_EVENTS, received, body)

    start, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    log.close()
    n = len(bodies) * 1000
    return n / elapsed, cpu / n * 1e6


def _wait_counted(base: str, timeout: float = 300) -> None:
    """Until the aggregator has applied every acked batch (its backlog gauge reads 0)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in httpx.get(f"{base}/metrics").text.splitlines():
            if line.startswith("meterplane_buffer_backlog_bytes ") and float(line.split()[1]) == 0:
                return
        time.sleep(0.02)
    raise SystemExit("aggregator did not catch up")


def _post(base: str, key: str, bodies: Path) -> dict[str, Any]:
    """Every body once, ``CONCURRENCY`` in flight, by the Go load generator."""
    url = f"{base}/api/v1/events"
    args = ["-url", url, "-bodies", str(bodies), "-concurrency", str(CONCURRENCY)]
    return run_loadgen("post", *args, "-header", f"X-API-KEY:{key}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a run under 30 s")
    args = parser.parse_args()
    batches, rounds = (60, 1) if args.quick else (600, 5)
    traffic = generate(load_catalog(), now_us(), n_events=batches * 1000, late_share=0.0)
    bodies = traffic.event_batches
    http_rates, raw_rates, counted_rates, only_rates = [], [], [], []
    cpus: dict[str, list[float]] = {"http": [], "raw": [], "only": [], "main": [], "agg": []}
    steals: list[float] = []
    n = len(bodies) * 1000
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        write_bodies(work / "bodies.bin", bodies)
        for r in range(rounds):
            with stolen(steals):
                rate, cpu = asyncio.run(_raw(bodies, work / f"raw{r}"))
            raw_rates.append(rate)
            cpus["raw"].append(cpu)
            with serve(work / f"only{r}", script="_ingest_only.py") as (base, key, pid):
                used = cpu_s(pid)
                with stolen(steals):
                    only = _post(base, key, work / "bodies.bin")
                cpus["only"].append((cpu_s(pid) - used) / n * 1e6)
            only_rates.append(acked_events_per_s(only, len(bodies)))
            with serve(work / f"plane{r}") as (base, key, pid):
                started, used, threads = time.perf_counter(), cpu_s(pid), thread_cpu_s(pid)
                with stolen(steals):
                    res = _post(base, key, work / "bodies.bin")
                _wait_counted(base)
                counted_rates.append(n / (time.perf_counter() - started))
                cpus["http"].append((cpu_s(pid) - used) / n * 1e6)
                after = thread_cpu_s(pid)
                for name, label in (("main", "main"), ("aggregator", "agg")):
                    cpus[label].append((after[name] - threads[name]) / n * 1e6)
            http_rates.append(acked_events_per_s(res, len(bodies)))
            print(
                f"round {r}: http {http_rates[-1]:,.0f} ev/s (p99 {res['p99_ms']} ms), "
                f"raw {raw_rates[-1]:,.0f} ev/s, ingest only {only_rates[-1]:,.0f} ev/s",
                file=sys.stderr,
            )
    http, raw = median(http_rates), median(raw_rates)
    emit(
        {
            "bench": "ingest",
            "batches": batches,
            "batch_size": 1000,
            "concurrency": CONCURRENCY,
            "rounds": rounds,
            "events_per_s": round(http),
            "raw_events_per_s": round(raw),
            "ratio": round(http / raw, 3),
            "aggregated_events_per_s": round(median(counted_rates)),
            "ingest_only_events_per_s": round(median(only_rates)),
            "ingest_only_ratio": round(median(only_rates) / raw, 3),
            "cpu_us_per_event": round(median(cpus["http"]), 2),
            "ingest_only_cpu_us_per_event": round(median(cpus["only"]), 2),
            "raw_cpu_us_per_event": round(median(cpus["raw"]), 2),
            "request_thread_cpu_us_per_event": round(median(cpus["main"]), 2),
            "aggregator_cpu_us_per_event": round(median(cpus["agg"]), 2),
            "host_steal_pct": round(100 * median(steals), 1),
            "host_steal_max_pct": round(100 * max(steals), 1),
        }
    )


if __name__ == "__main__":
    main()
