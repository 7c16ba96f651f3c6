"""Real peers for the sync tests: the reference control plane and data planes, as
subprocesses on loopback ports, or the control plane in a thread of the test process."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from meterplane.controlplane.server import create_control_plane
from meterplane.controlplane.store import ControlPlaneStore

ADMIN = "admin-token-0123456789"
ENV = "acme-prod"
TOKEN = "env-token-acme-prod-0123456789"
API_KEY = "ingest-key-0123456789abcdef"

CATALOG: dict[str, Any] = {
    "version": "v1",
    "features": [
        {"id": "api-calls", "type": "METERED", "meter": {"eventName": "api_call"}},
        {
            "id": "tokens",
            "type": "METERED",
            "meter": {
                "eventName": "completion",
                "aggregation": {"function": "SUM", "field": "tokens"},
            },
        },
        {"id": "sso", "type": "BOOLEAN"},
    ],
    "plans": [
        {
            "id": "starter",
            "entitlements": {"api-calls": {"usageLimit": 5, "resetPeriod": "MONTH"}},
        },
        {
            "id": "pro",
            "entitlements": {
                "api-calls": {"usageLimit": 100, "resetPeriod": "MONTH"},
                "tokens": {"usageLimit": 1000, "resetPeriod": "MONTH"},
                "sso": {},
            },
        },
    ],
    "addons": [],
}


def free_port() -> int:
    """A TCP port free on loopback right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(pred: Callable[[], Any], timeout: float, what: str, every: float = 0.05) -> Any:
    """Poll ``pred`` until it returns something truthy; fail with ``what`` on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(every)


def sub(plan: str, start: str = "2026-01-01T00:00:00Z", **kw: Any) -> dict[str, Any]:
    """A subscription as the change feed carries it."""
    return {"planId": plan, "startDate": start, **kw}


class Admin:
    """The vendor side of a control plane: push changes, read what arrived."""

    def __init__(self, base_url: str) -> None:
        self.http = httpx.Client(
            base_url=base_url, headers={"Authorization": f"Bearer {ADMIN}"}, timeout=10
        )

    def push(self, kind: str, data: dict[str, Any], env: str = ENV) -> dict[str, Any]:
        r = self.http.post(
            f"/admin/v1/environments/{env}/changes", json={"type": kind, "data": data}
        )
        assert r.status_code == 200, r.text
        return dict(r.json())

    def state(self, env: str = ENV) -> dict[str, Any]:
        r = self.http.get(f"/admin/v1/environments/{env}/state")
        assert r.status_code == 200, r.text
        return dict(r.json())

    def totals(self, env: str = ENV) -> dict[tuple[str, str, str], Any]:
        return {
            (t["customerId"], t["featureId"], t["periodStart"]): t["value"]
            for t in self.state(env)["totals"]
        }

    def exchanges(self) -> list[dict[str, Any]]:
        r = self.http.get("/admin/v1/exchanges")
        assert r.status_code == 200, r.text
        return list(r.json()["exchanges"])

    def faults(self, ack_delay_s: float) -> None:
        r = self.http.put("/admin/v1/faults", json={"ackDelaySeconds": ack_delay_s})
        assert r.status_code == 200, r.text

    def close(self) -> None:
        self.http.close()


class ThreadControlPlane:
    """The reference control plane served by uvicorn in a thread of the test process."""

    def __init__(self, data_dir: Path, port: int | None = None) -> None:
        self.data_dir = data_dir
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self.store: ControlPlaneStore | None = None

    def start(self) -> ThreadControlPlane:
        self.store = ControlPlaneStore(self.data_dir / "control-plane.sqlite")
        self.store.set_environment(ENV, TOKEN)
        app = create_control_plane(self.store, ADMIN)
        config = uvicorn.Config(
            app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="off"
        )
        config.timeout_graceful_shutdown = 1
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)
        self._thread.start()
        wait_until(lambda: self._server is not None and self._server.started, 10, "control plane")
        return self

    def stop(self) -> None:
        assert self._server is not None
        assert self._thread is not None
        self._server.should_exit = True
        self._thread.join(timeout=10)
        assert self.store is not None
        self.store.close()


class Proc:
    """A ``meterplane`` subcommand as a subprocess, with its stderr captured to a file."""

    def __init__(self, args: list[str], env: dict[str, str], log: Path) -> None:
        self.args, self.env, self.log = args, env, log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Proc:
        full = {**os.environ, **self.env}
        with self.log.open("ab") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "meterplane", *self.args],
                env=full,
                stdout=subprocess.DEVNULL,
                stderr=err,
            )
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL: no cleanup of any kind."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=20)

    def stop(self, timeout: float = 40) -> None:
        """SIGTERM and wait (SIGKILL if it will not stop)."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def stderr(self) -> str:
        return self.log.read_text(errors="replace")


def wait_http(url: str, timeout: float, proc: Proc) -> None:
    """Wait until ``url`` answers 200 (fail early if the process died)."""

    def up() -> bool:
        assert proc.alive(), f"process exited:\n{proc.stderr()[-3000:]}"
        try:
            return httpx.get(url, timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    wait_until(up, timeout, url, every=0.1)


def listening_ports(pid: int) -> set[int]:
    """TCP ports in LISTEN state on sockets the process holds (from /proc, no tools)."""
    return {lport for lport, _, state in _sockets(pid) if state == "0A"}


def connections(pid: int) -> list[tuple[int, int, str]]:
    """(local port, remote port, state) of every TCP socket the process holds."""
    return _sockets(pid)


def _sockets(pid: int) -> list[tuple[int, int, str]]:
    inodes: set[str] = set()
    fd_dir = Path(f"/proc/{pid}/fd")
    for fd in fd_dir.iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    out = []
    for table in ("tcp", "tcp6"):
        path = Path(f"/proc/{pid}/net/{table}")
        if not path.exists():
            continue
        for line in path.read_text().splitlines()[1:]:
            cols = line.split()
            if cols[9] in inodes:
                lport = int(cols[1].rsplit(":", 1)[1], 16)
                rport = int(cols[2].rsplit(":", 1)[1], 16)
                out.append((lport, rport, cols[3]))
    return out
