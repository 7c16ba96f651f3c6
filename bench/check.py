"""Entitlement check latency: in-process (the decision itself) and over HTTP at a fixed rate.

``inprocess_p99_us``: one ``Decider.check`` on a populated counter book, timed one call
at a time. HTTP: the Go load generator sends checks open-loop at ``--rate`` per second
(default 5,000; due in groups each millisecond, five at a time at that rate) for a few
seconds against a real ``meterplane serve`` holding the demo's traffic, after a warm-up at
the same rate that opens its connections; latency counts from the due time, so queueing
is not hidden. The generator keeps its due times to within tens of microseconds
(``loadgen/sleep_linux.go``): sleeping in Go's timers, it sent a median 0.59 ms late and
charged that to the server. The baseline, in the same run and
alternating with it round by round: the same load against ``_bare_http.py``, a Python
server that does nothing but answer (the floor this machine and client impose).
``cpu_us_per_check``: the server process's CPU time (user + system, ``/proc/<pid>/stat``)
over a round, warm-up included, divided by the checks sent in it; ``baseline_cpu_us_per_check``
the same for the bare server. Steadier than a p99 on a noisy machine, and what a p99 at a
fixed rate grows with. ``host_steal_pct`` (median over the HTTP rounds, both servers) and
``host_steal_max_pct``: the share of the machine's CPU time the hypervisor took during
them (``/proc/stat``): a vCPU taken for milliseconds stalls whatever runs on it, and at
5,000 checks/s 1 % of the requests is 80 ms of an 8 s round. Several rounds; medians.
Run: ``python bench/check.py [--quick] [--rate N]``.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import httpx
from _common import cpu_s, emit, median, pct, run_loadgen, stolen, write_bodies

from meterplane.core.catalog import load_catalog
from meterplane.core.timeutil import now_us
from meterplane.entitlements.decide import Decider
from meterplane.localplane import ServeProcess, free_port
from meterplane.simulate import CUSTOMERS, generate

FEATURES = ("api-calls", "tokens", "active-users", "seats", "sso", "storage-gb")


def inprocess_p99_us(n: int) -> tuple[float, float]:
    """(p50, p99) of one in-process decision, microseconds."""
    catalog = load_catalog()
    traffic = generate(catalog, now_us(), n_events=50_000)
    assert traffic.expected is not None
    decider = Decider(lambda: catalog, traffic.expected)
    samples = []
    clock = time.perf_counter_ns
    for i in range(n):
        customer = CUSTOMERS[i % len(CUSTOMERS)]
        feature = FEATURES[i % len(FEATURES)]
        t0 = clock()
        decider.check(customer, feature, 1)
        samples.append((clock() - t0) / 1000)
    return pct(samples, 0.5), pct(samples, 0.99)


@contextmanager
def _bare_server() -> Iterator[tuple[str, int]]:
    """``_bare_http.py`` in its own process; yields its base URL and pid."""
    port = free_port()
    script = Path(__file__).resolve().parent / "_bare_http.py"
    proc = subprocess.Popen([sys.executable, str(script), str(port)], stdout=subprocess.PIPE)
    try:
        assert proc.stdout is not None
        if proc.stdout.readline().strip() != b"ready":
            raise SystemExit("_bare_http.py did not start")
        yield f"http://127.0.0.1:{port}", proc.pid
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a run under 30 s")
    parser.add_argument("--rate", type=int, default=5000, help="HTTP checks per second")
    args = parser.parse_args()
    rounds, seconds = (1, 3) if args.quick else (3, 8)
    ip50, ip99 = inprocess_p99_us(20_000 if args.quick else 100_000)
    catalog = load_catalog()
    traffic = generate(catalog, now_us(), n_events=20_000)
    p50s, p99s, rates, ok, base_p99s, cpus, base_cpus = [], [], [], [], [], [], []
    steals: list[float] = []
    warmup_s = 1 if args.quick else 2
    sent = args.rate * (warmup_s + seconds)  # open loop: what the server answers per round
    with tempfile.TemporaryDirectory() as tmp, _bare_server() as (bare, bare_pid):
        work = Path(tmp)
        write_bodies(work / "bodies.bin", traffic.event_batches)
        paths = work / "paths.txt"
        paths.write_text(
            "\n".join(
                f"/api/v1/customers/{c}/entitlements/check?featureId={f}"
                for c in CUSTOMERS
                for f in FEATURES
            )
        )
        with ServeProcess(work / "plane") as plane:
            base, key = plane.base_url, plane.api_key
            assert plane.proc is not None
            for body in traffic.event_batches:
                httpx.post(f"{base}/api/v1/events", content=body, headers={"X-API-KEY": key})
            for _ in range(rounds):
                load = ["-paths", str(paths), "-rate", str(args.rate), "-warmup", f"{warmup_s}s"]
                load += ["-duration", f"{seconds}s", "-header", f"X-API-KEY:{key}"]
                used = cpu_s(bare_pid)
                with stolen(steals):
                    floor = run_loadgen("get", "-base", bare, *load)
                base_cpus.append((cpu_s(bare_pid) - used) / sent * 1e6)
                base_p99s.append(floor["p99_ms"])
                print(f"baseline round: {floor}", file=sys.stderr)
                used = cpu_s(plane.proc.pid)
                with stolen(steals):
                    res = run_loadgen("get", "-base", base, *load)
                cpus.append((cpu_s(plane.proc.pid) - used) / sent * 1e6)
                p50s.append(res["p50_ms"])
                p99s.append(res["p99_ms"])
                rates.append(res["rps"])
                ok.append(res["statuses"].get("200", 0) == res["requests"] and not res["errors"])
                print(f"round: {res}", file=sys.stderr)
    emit(
        {
            "bench": "check",
            "inprocess_p50_us": round(ip50, 2),
            "inprocess_p99_us": round(ip99, 2),
            "offered_rate": args.rate,
            "rounds": rounds,
            "http_p50_ms": round(median(p50s), 3),
            "http_p99_ms": round(median(p99s), 3),
            "http_checks_per_s": round(median(rates)),
            "baseline_p99_ms": round(median(base_p99s), 3),
            "p99_ratio_to_baseline": round(median(p99s) / median(base_p99s), 2),
            "cpu_us_per_check": round(median(cpus), 1),
            "baseline_cpu_us_per_check": round(median(base_cpus), 1),
            "all_200": all(ok),
            "host_steal_pct": round(100 * median(steals), 1),
            "host_steal_max_pct": round(100 * max(steals), 1),
        }
    )


if __name__ == "__main__":
    main()
