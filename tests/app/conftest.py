"""Fixtures for the embedded data plane: a real plane on a temporary directory."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI

from meterplane.core.settings import load_settings
from meterplane.http.app import asgi, create_app
from meterplane.http.server import http_config
from meterplane.localplane import free_port
from meterplane.plane import EmbeddedPlane
from tests import aio

API_KEY = "test-key-0123456789abcdef"


class Api:
    """Calls the real ASGI app in-process; each call runs its own event loop."""

    def __init__(self, plane: EmbeddedPlane) -> None:
        self.plane = plane
        self.app = create_app(plane.buffer, plane.decider, (API_KEY,), max_body_bytes=4_000_000)

    def _client(self) -> httpx.AsyncClient:
        transport = httpx.ASGITransport(app=asgi(self.app))
        return httpx.AsyncClient(
            transport=transport, base_url="http://plane", headers={"X-API-KEY": API_KEY}
        )

    async def _send(self, requests: list[tuple[str, str, dict[str, Any]]]) -> list[httpx.Response]:
        async with self._client() as client:
            return list(
                await asyncio.gather(*(client.request(m, u, **kw) for m, u, kw in requests))
            )

    def request(self, method: str, url: str, **kw: Any) -> httpx.Response:
        """One request."""
        return aio.run(self._send([(method, url, kw)]))[0]

    def concurrently(self, requests: list[tuple[str, str, dict[str, Any]]]) -> list[httpx.Response]:
        """Several requests at once, on one event loop."""
        return aio.run(self._send(requests))

    def check(self, customer: str, feature: str, **params: Any) -> dict[str, Any]:
        """A decision as JSON (asserts 200)."""
        r = self.request(
            "GET",
            f"/api/v1/customers/{customer}/entitlements/check",
            params={"featureId": feature, **params},
        )
        assert r.status_code == 200, r.text
        return dict(r.json())

    def settle(self, timeout: float = 10) -> None:
        """Wait until the aggregator has applied everything durable."""
        deadline = time.monotonic() + timeout
        while self.plane.aggregator.pos < self.plane.log.durable_end:
            assert self.plane.aggregator.error is None
            assert time.monotonic() < deadline, "aggregator did not catch up"
            time.sleep(0.01)


@contextmanager
def serving(app: FastAPI, keep_alive_s: float | None = None) -> Iterator[int]:
    """uvicorn serving ``app`` as ``serve`` does, in a thread; yields the port."""
    port = free_port()
    config = http_config(app, "127.0.0.1", port, "warning")
    if keep_alive_s is not None:
        config.timeout_keep_alive = keep_alive_s  # type: ignore[assignment]
    srv = uvicorn.Server(config)
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not srv.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.01)
    try:
        yield port
    finally:
        srv.should_exit = True
        thread.join(timeout=10)


def make_plane(data_dir: Path, **overrides: Any) -> EmbeddedPlane:
    """A started plane over ``data_dir``."""
    settings = load_settings(
        env={}, data_dir=data_dir, api_keys=API_KEY, checkpoint_interval_s=0.2, **overrides
    )
    plane = EmbeddedPlane(settings)
    plane.start()
    return plane


@pytest.fixture
def plane(tmp_path: Path) -> Iterator[EmbeddedPlane]:
    p = make_plane(tmp_path / "data")
    yield p
    p.stop()


@pytest.fixture
def api(plane: EmbeddedPlane) -> Api:
    return Api(plane)
