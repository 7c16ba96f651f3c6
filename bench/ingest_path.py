"""What an ingest batch costs the serving thread, through the fast path and through FastAPI.

The served app (``asgi(create_app(...))``) takes ``POST /api/v1/events`` on a fast path
that calls the same ``Ingest`` as the FastAPI route without Starlette's routing,
middleware and dependency resolution. Both are driven in-process over ASGI (no sockets),
with 8 concurrent clients, against a real plane's durable log (appended and fsync'd; no
aggregator runs). ``fast_us_per_request`` and ``routes_us_per_request`` are the serving
thread's CPU per request for batches of 1, 100 and 1,000 events; ``ratio`` = routes /
fast. The fixed cost per request is what the fast path saves, so small batches gain most.
Medians over rounds that alternate the two.
Run: ``python bench/ingest_path.py [--quick]``.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import msgspec

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import emit, median

from meterplane.core.catalog import load_catalog
from meterplane.core.settings import load_settings
from meterplane.core.timeutil import now_us
from meterplane.http.app import asgi, create_app
from meterplane.plane import EmbeddedPlane
from meterplane.simulate import generate

API_KEY = "bench-ingest-path-key"
CONCURRENCY = 8


def _scope(body: bytes) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/api/v1/events",
        "raw_path": b"/api/v1/events",
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"content-type", b"application/json"),
            (b"content-length", b"%d" % len(body)),
            (b"x-api-key", API_KEY.encode()),
        ],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8080),
    }


async def _post(app: Any, body: bytes) -> None:
    sent = False

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.Event().wait()  # the client never disconnects
        raise AssertionError("unreachable")

    status = 0

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    await app(_scope(body), receive, send)
    if status != 202:
        raise SystemExit(f"a batch was answered {status}, not 202")


async def _cpu_us_per_request(app: Any, bodies: list[bytes]) -> float:
    queue = list(reversed(bodies))

    async def client() -> None:
        while queue:
            await _post(app, queue.pop())

    cpu = time.thread_time()
    await asyncio.gather(*(client() for _ in range(CONCURRENCY)))
    return (time.thread_time() - cpu) / len(bodies) * 1e6


def _batches(size: int, events: int) -> list[bytes]:
    """The demo's events (no late ones), re-cut into batches of ``size``."""
    traffic = generate(load_catalog(), now_us(), n_events=events, late_share=0.0)
    items = [e for body in traffic.event_batches for e in msgspec.json.decode(body)["events"]]
    return [
        msgspec.json.encode({"events": items[i : i + size]}) for i in range(0, len(items), size)
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a run under 30 s")
    args = parser.parse_args()
    rounds, events = (3, 20_000) if args.quick else (7, 60_000)
    result: dict[str, Any] = {"bench": "ingest_path", "concurrency": CONCURRENCY, "rounds": rounds}
    with tempfile.TemporaryDirectory() as tmp:
        settings = load_settings(env={}, data_dir=Path(tmp), api_keys=API_KEY)
        plane = EmbeddedPlane(settings)  # not started: nothing counts behind the log
        plane.aggregator.offer = lambda frame, items=None: None  # type: ignore[method-assign]
        routes = create_app(plane.buffer, plane.decider, (API_KEY,))
        fast = asgi(routes)
        gc.freeze()
        try:
            for size in (1, 100, 1000):
                bodies = _batches(size, min(events, 2_000 * size))
                times: dict[str, list[float]] = {"fast": [], "routes": []}
                for _ in range(rounds):
                    times["fast"].append(asyncio.run(_cpu_us_per_request(fast, bodies)))
                    times["routes"].append(asyncio.run(_cpu_us_per_request(routes, bodies)))
                fast_us, routes_us = median(times["fast"]), median(times["routes"])
                print(f"{size:>5} events/batch: fast {fast_us:,.0f} µs, routes {routes_us:,.0f} µs")
                result[f"fast_us_per_request_{size}"] = round(fast_us, 1)
                result[f"routes_us_per_request_{size}"] = round(routes_us, 1)
                result[f"ratio_{size}"] = round(routes_us / fast_us, 2)
        finally:
            plane.log.close()
            plane.engine.close()
    emit(result)


if __name__ == "__main__":
    main()
