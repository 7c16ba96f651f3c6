"""``meterplane demo``: start an embedded data plane, drive realistic traffic, show results.

The plane runs as a real ``meterplane serve`` process on a free loopback port over a
temporary directory. Several concurrent clients send batches of 1,000 events (with
duplicated batches, late events and one invalid batch), then usage reports; the demo
waits until every counter equals the offline reference tally, prints a table of usage and
decisions per customer, and the measured ingest rate and check latency.
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import shutil
import statistics
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from meterplane.core.catalog import Catalog, load_catalog
from meterplane.core.periods import period_bounds
from meterplane.core.timeutil import now_us
from meterplane.localplane import ServeProcess
from meterplane.simulate import CUSTOMERS, Traffic, generate

FEATURES = ("api-calls", "tokens", "active-users", "storage-gb", "seats")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--events", type=int, default=250_000, help="events to send")
    parser.add_argument("--clients", type=int, default=4, help="concurrent clients")
    parser.add_argument("--checks", type=int, default=3000, help="HTTP checks to time")
    parser.add_argument("--keep", action="store_true", help="keep the data directory")


@contextmanager
def embedded_plane(data_dir: Path, api_key: str) -> Iterator[str]:
    """A ``meterplane serve`` process; yields its base URL; SIGTERM on exit."""
    with (data_dir.parent / "serve.log").open("wb") as log_file:
        plane = ServeProcess(data_dir, api_key, output=log_file)
        try:
            yield plane.start()
        finally:
            plane.stop(timeout=30)


async def _drive(
    base: str, key: str, traffic: Traffic, clients: int, progress: Progress
) -> tuple[int, float, list[int]]:
    bodies = traffic.event_batches + traffic.duplicate_batches
    # Interleave the duplicates among the originals, as retries would arrive.
    order = sorted(range(len(bodies)), key=lambda i: (i * 7919) % len(bodies))
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    for i in order:
        queue.put_nowait(bodies[i])
    task = progress.add_task("sending", total=len(bodies) * 1000)
    statuses: list[int] = []
    headers = {"X-API-KEY": key, "Content-Type": "application/json"}

    async def client() -> None:
        async with httpx.AsyncClient(base_url=base, headers=headers, timeout=30) as http:
            while not queue.empty():
                body = queue.get_nowait()
                while True:
                    r = await http.post("/api/v1/events", content=body)
                    if r.status_code != 503:
                        break
                    await asyncio.sleep(float(r.headers.get("Retry-After", "1")))
                statuses.append(r.status_code)
                progress.advance(task, 1000)

    start = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    elapsed = time.perf_counter() - start
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=30) as http:
        bad = await http.post("/api/v1/events", content=traffic.invalid_batch)
        statuses.extend(
            [
                (await http.post("/api/v1/usage", content=b)).status_code
                for b in traffic.usage_batches
            ]
        )
    return len(bodies) * 1000, elapsed, [*statuses, bad.status_code]


def _expected(catalog: Catalog, traffic: Traffic, customer: str, feature: str, now: int) -> Any:
    assert traffic.expected is not None
    spec = catalog.resolved(customer, feature)
    if spec is None:
        return None
    start, _ = period_bounds(spec.reset_period, spec.anchor_us, now)
    return traffic.expected.value(customer, feature, start)


def _wait_exact(
    http: httpx.Client, catalog: Catalog, traffic: Traffic, timeout: float = 30
) -> tuple[bool, float]:
    start = time.perf_counter()
    while True:
        now = now_us()
        ok = True
        for customer in CUSTOMERS[:4]:
            for feature in FEATURES:
                want = _expected(catalog, traffic, customer, feature, now)
                if want is None:
                    continue
                d = http.get(
                    f"/api/v1/customers/{customer}/entitlements/check",
                    params={"featureId": feature, "requestedUsage": 0},
                ).json()
                if d["currentUsage"] != want:
                    ok = False
        waited = time.perf_counter() - start
        if ok or waited > timeout:
            return ok, waited
        time.sleep(0.1)


def _latencies(http: httpx.Client, n: int) -> list[float]:
    out = []
    for i in range(n):
        customer = CUSTOMERS[i % len(CUSTOMERS)]
        t0 = time.perf_counter()
        http.get(
            f"/api/v1/customers/{customer}/entitlements/check", params={"featureId": "api-calls"}
        )
        out.append((time.perf_counter() - t0) * 1000)
    return out


def _short(v: Any) -> str:
    """1234567 -> 1.23M: keeps the table narrow."""
    if not isinstance(v, int | float):
        return str(v)
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e4)):
        if abs(v) >= size:
            scaled = v / (size if unit != "k" else 1e3)
            return f"{scaled:.3g}{unit}"
    return f"{v:g}"


def _table(http: httpx.Client, catalog: Catalog, traffic: Traffic) -> Table:
    table = Table(title="usage and decisions (current period)")
    table.add_column("customer")
    table.add_column("plan")
    for f in FEATURES:
        table.add_column(f, justify="right")
    table.add_column("check api-calls")
    now = now_us()
    for customer in CUSTOMERS:
        c = catalog.customers.get(customer)
        plan = c.subscription.planId if c and c.subscription else "—"
        if c and c.subscription and c.subscription.status.value != "ACTIVE":
            plan += f" ({c.subscription.status.value.lower()})"
        cells = []
        for f in FEATURES:
            d = http.get(
                f"/api/v1/customers/{customer}/entitlements/check",
                params={"featureId": f, "requestedUsage": 0},
            ).json()
            if d["accessDeniedReason"] in ("CustomerNotFound", "NoActiveSubscription"):
                cells.append("—")
                continue
            if d["accessDeniedReason"] == "NoFeatureEntitlementInSubscription":
                cells.append("not in plan")
                continue
            used = d["currentUsage"]
            want = _expected(catalog, traffic, customer, f, now)
            mark = "" if want is None or want == used else " ≠"
            limit = "∞" if d["hasUnlimitedUsage"] else d["usageLimit"]
            cells.append(f"{_short(used)}/{_short(limit)}{mark}")
        d = http.get(
            f"/api/v1/customers/{customer}/entitlements/check", params={"featureId": "api-calls"}
        ).json()
        verdict = (
            "[green]granted[/green]"
            if d["isGranted"]
            else f"[red]denied[/red] {d['accessDeniedReason']}"
        )
        table.add_row(customer, plan, *cells, verdict)
    return table


def demo(events: int, clients: int, checks: int, keep: bool, console: Console) -> int:
    """Run the demo; returns the exit status (0 when every counter is exact)."""
    catalog = load_catalog(None)
    work = Path(tempfile.mkdtemp(prefix="meterplane-demo-"))
    key = secrets.token_urlsafe(24)
    console.print(f"[bold]Meterplane demo[/bold] — embedded data plane in {work}")
    with console.status("generating traffic"):
        traffic = generate(catalog, now_us(), n_events=events)
    console.print(
        f"traffic: {len(traffic.event_batches)} batches of 1,000 events, "
        f"{len(traffic.duplicate_batches)} resent whole, ~8% late (1-30 days old), "
        "1 invalid batch, 1 usage batch (SET/DELTA)"
    )
    with embedded_plane(work / "data", key) as base:
        with Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
        ) as progress:
            sent, elapsed, statuses = asyncio.run(_drive(base, key, traffic, clients, progress))
        accepted = statuses.count(202)
        console.print(
            f"ingest: {sent:,} events in {elapsed:.2f} s = "
            f"[bold]{sent / elapsed:,.0f} events/s[/bold] over HTTP, acked after fsync "
            f"({clients} clients); {accepted} batches 202, "
            f"invalid batch → {statuses[-1]} (nothing from it stored)"
        )
        with httpx.Client(base_url=base, headers={"X-API-KEY": key}, timeout=30) as http:
            exact, waited = _wait_exact(http, catalog, traffic)
            console.print(
                f"counters equal the offline tally of {traffic.unique_events:,} unique events: "
                + ("[green]yes[/green]" if exact else "[red]NO[/red]")
                + f" (after {waited:.2f} s; "
                f"{len(traffic.duplicate_batches) * 1000:,} duplicates dropped)"
            )
            lat = sorted(_latencies(http, checks))
            p50 = statistics.median(lat)
            p99 = lat[int(len(lat) * 0.99) - 1]
            console.print(
                f"entitlement check over HTTP (client-measured, keep-alive, {checks} checks): "
                f"p50 {p50:.3f} ms, p99 {p99:.3f} ms"
            )
            console.print(_table(http, catalog, traffic))
    if keep:
        console.print(f"data kept in {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)
    return 0 if exact and statuses[-1] == 422 else 1


def run(args: argparse.Namespace) -> int:
    console = Console()
    if not console.is_terminal:
        console = Console(width=140)  # logs and CI: do not squeeze the table into 80 columns
    return demo(args.events, args.clients, args.checks, args.keep, console)
