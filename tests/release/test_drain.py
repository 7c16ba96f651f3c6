"""Ingest drains on SIGTERM: in-flight batches finish with 202, new connections are refused,
and the process exits well inside the pod's termination grace period.

The batches are genuinely in flight when the signal lands: each client has sent its
request line, headers and half of its body, and sends the rest only after SIGTERM.
"""

from __future__ import annotations

import json
import signal
import socket
import time
from pathlib import Path

import httpx
import pytest

from components.k8s.services import DRAIN_S
from tests.release.serving import API_KEY, events_body, serve

# What the ingest Deployment allows after its preStop wait (components/k8s/services.py).
POD_GRACE_S = DRAIN_S


def _start_request(port: int, body: bytes) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    head = (
        f"POST /api/v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\nX-API-KEY: {API_KEY}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    sock.sendall(head + body[: len(body) // 2])
    return sock


def _finish(sock: socket.socket, body: bytes) -> tuple[int, dict[str, object]]:
    sock.sendall(body[len(body) // 2 :])
    data = b""
    while b"\r\n\r\n" not in data or not _complete(data):
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    sock.close()
    head, _, payload = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    return status, json.loads(payload)


def _complete(data: bytes) -> bool:
    head, _, payload = data.partition(b"\r\n\r\n")
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return len(payload) >= int(line.split(b":")[1])
    return False


@pytest.mark.slow
def test_sigterm_drains_in_flight_batches_and_refuses_new_connections(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    with serve(data_dir) as (process, url):
        port = int(url.rsplit(":", 1)[1])
        bodies = [events_body(1000, f"inflight{i}") for i in range(3)]
        socks = [_start_request(port, body) for body in bodies]
        time.sleep(0.5)  # the server has read the headers: these requests are in flight
        signalled = time.monotonic()
        process.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        with pytest.raises(httpx.ConnectError):
            httpx.post(f"{url}/api/v1/events", content=events_body(1, "late"), timeout=5)
        answers = [_finish(sock, body) for sock, body in zip(socks, bodies, strict=True)]
        assert answers == [(202, {"accepted": 1000})] * 3
        assert process.wait(timeout=POD_GRACE_S) == 0
        exited_after = time.monotonic() - signalled
    assert exited_after < POD_GRACE_S

    # The drained batches were durable: a restarted plane counts all 3,000 of them.
    with serve(data_dir) as (_, url):
        deadline = time.monotonic() + 15
        while (used := _usage(url)) < 3000 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert used == 3000


def _usage(url: str) -> float:
    decision = httpx.get(
        f"{url}/api/v1/customers/acme/entitlements/check",
        params={"featureId": "api-calls", "requestedUsage": 0},
        headers={"X-API-KEY": API_KEY},
        timeout=10,
    ).json()
    return float(decision["currentUsage"])
