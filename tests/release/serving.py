"""A real ``meterplane serve`` process on loopback, for the release tests."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

API_KEY = "release-test-key-0123456789"


def free_port() -> int:
    """A loopback port nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def events_body(count: int, prefix: str) -> bytes:
    """A valid events batch of ``count`` distinct events."""
    events = [
        {"customerId": "acme", "eventName": "api_call", "idempotencyKey": f"{prefix}-{i}"}
        for i in range(count)
    ]
    return json.dumps({"events": events}).encode()


@contextlib.contextmanager
def serve(data_dir: Path) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """Start ``meterplane serve``; yield the process and its base URL; kill it at the end."""
    port = free_port()
    env = dict(
        os.environ,
        METERPLANE_API_KEYS=API_KEY,
        METERPLANE_LOG_LEVEL="WARNING",
        METERPLANE_DATA_DIR=str(data_dir),
    )
    env.pop("METERPLANE_CONTROL_PLANE_URL", None)
    log = (data_dir.parent / f"serve-{port}.log").open("wb")
    argv = [str(Path(sys.executable).parent / "meterplane"), "serve", "--port", str(port)]
    process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"serve exited: {Path(log.name).read_text()[-2000:]}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError("serve not ready after 60 s")
            time.sleep(0.1)
        yield process, url
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=30)
        log.close()
