"""Where an HTTP check's time goes: the same request through ``serve``'s protocol, hot and cold.

One ``CheckProtocol`` (uvicorn's httptools protocol with the check fast path, exactly as
``serve`` builds it) over a transport that keeps what is written, fed the bytes of one
check request at a time: parsing, key check, decision, encoding and the response write,
everything but the kernel. ``hot_us``: requests back to back, the interpreter's caches
warm. ``gap_200us_us`` and ``gap_1ms_us``: the thread sleeps that long between requests,
as it does at 5,000 and 1,000 checks/s, so each request starts with cold caches. The
ratios to ``hot_us`` show how much of a check's cost over HTTP is the machine going idle
between requests rather than the code. The baseline, in the same run: ``_bare_http.py``'s
protocol (answers without parsing), fed the same bytes the same way (``bare_*``). Medians
over rounds.
Run: ``python bench/check_path.py [--quick]``.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import uvloop
from _bare_http import Bare
from _common import emit, median
from uvicorn.server import ServerState

from meterplane.core.settings import load_settings
from meterplane.http.app import create_app
from meterplane.http.server import CheckProtocol, http_config
from meterplane.plane import EmbeddedPlane

API_KEY = "bench-check-path-key"
REQUEST = (
    b"GET /api/v1/customers/acme/entitlements/check?featureId=api-calls HTTP/1.1\r\n"
    b"Host: 127.0.0.1:8080\r\nUser-Agent: Go-http-client/1.1\r\n"
    b"X-Api-Key: " + API_KEY.encode() + b"\r\nAccept-Encoding: gzip\r\n\r\n"
)


class _Transport:
    """What the protocol needs of a socket transport; ``write`` keeps the last response."""

    def __init__(self) -> None:
        self.last = b""

    def write(self, data: bytes) -> None:
        self.last = data

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 8080) if name in ("peername", "sockname") else default

    def is_closing(self) -> bool:
        return False

    def close(self) -> None:
        pass

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def set_write_buffer_limits(self, *args: Any, **kwargs: Any) -> None:
        pass

    def get_write_buffer_size(self) -> int:
        return 0


def _timed(protocol: asyncio.Protocol, gaps: list[float], n: int) -> dict[float, float]:
    """Median microseconds of one ``data_received(REQUEST)`` after each idle gap."""
    clock = time.perf_counter
    out = {}
    for gap in gaps:
        samples = []
        for _ in range(n):
            if gap:
                time.sleep(gap)  # the thread itself idles, as between requests
            t0 = clock()
            protocol.data_received(REQUEST)
            samples.append((clock() - t0) * 1e6)
        out[gap] = median(samples)
    return out


async def _measure(
    plane: EmbeddedPlane, gaps: list[float], n: int
) -> tuple[dict[float, float], dict[float, float]]:
    app = create_app(plane.buffer, plane.decider, (API_KEY,))
    config = http_config(app, "127.0.0.1", 8080, "warning")
    config.load()
    protocol = CheckProtocol(
        config=config, server_state=ServerState(), app_state={}, _loop=asyncio.get_running_loop()
    )
    bare = Bare()
    for subject in (protocol, bare):
        transport = _Transport()
        subject.connection_made(transport)
        for _ in range(2000):
            subject.data_received(REQUEST)
        if not transport.last.startswith(b"HTTP/1.1 200 OK"):
            raise SystemExit(f"the check was not answered: {transport.last[:200]!r}")
    ours, floor = _timed(protocol, gaps, n), _timed(bare, gaps, n)
    protocol.connection_lost(None)
    return ours, floor


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a run under 30 s")
    args = parser.parse_args()
    rounds, n = (1, 2000) if args.quick else (3, 5000)
    gaps = [0.0, 200e-6, 1e-3]
    results: dict[float, list[float]] = {g: [] for g in gaps}
    baseline: dict[float, list[float]] = {g: [] for g in gaps}
    with tempfile.TemporaryDirectory() as tmp:
        settings = load_settings(env={}, data_dir=Path(tmp) / "data", api_keys=API_KEY)
        plane = EmbeddedPlane(settings)
        plane.start()
        try:
            for r in range(rounds):
                ours, floor = uvloop.run(_measure(plane, gaps, n))
                print(f"round {r + 1}: serve {ours}, bare {floor}", file=sys.stderr)
                for gap in gaps:
                    results[gap].append(ours[gap])
                    baseline[gap].append(floor[gap])
        finally:
            plane.stop()
    hot, warm, cold = (median(results[g]) for g in gaps)
    bare_hot, bare_warm, bare_cold = (median(baseline[g]) for g in gaps)
    emit(
        {
            "bench": "check_path",
            "requests_per_round": n,
            "rounds": rounds,
            "hot_us": round(hot, 2),
            "gap_200us_us": round(warm, 2),
            "gap_1ms_us": round(cold, 2),
            "gap_200us_ratio": round(warm / hot, 2),
            "gap_1ms_ratio": round(cold / hot, 2),
            "bare_hot_us": round(bare_hot, 2),
            "bare_gap_200us_us": round(bare_warm, 2),
            "bare_gap_1ms_us": round(bare_cold, 2),
            "gap_200us_extra_us": round((warm - hot) - (bare_warm - bare_hot), 2),
        }
    )


if __name__ == "__main__":
    main()
