"""A ``meterplane serve`` process on loopback: for the demo, benchmarks and tests."""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import IO

import httpx


def free_port() -> int:
    """A free TCP port on loopback."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServeProcess:
    """``meterplane serve`` on ``data_dir`` and a free port; ``start`` waits for /readyz.

    It can be killed (SIGKILL) and started again on the same directory and port, as a
    crash and a restart would.
    """

    def __init__(
        self,
        data_dir: Path,
        api_key: str | None = None,
        env: dict[str, str] | None = None,
        output: IO[bytes] | None = None,
        args: Sequence[str] = ("-m", "meterplane", "serve"),
    ) -> None:
        self.data_dir = data_dir
        self._args = list(args)  # what the interpreter runs (a benchmark may run a variant)
        self.api_key = api_key or secrets.token_urlsafe(24)
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self._env = env or {}
        self._output = output
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60) -> str:
        """Start and wait until ready; returns the base URL."""
        env = {
            **os.environ,
            "METERPLANE_API_KEYS": self.api_key,
            "METERPLANE_DATA_DIR": str(self.data_dir),
            "METERPLANE_HTTP_PORT": str(self.port),
            "METERPLANE_LOG_LEVEL": "WARNING",
            **self._env,
        }
        self.proc = subprocess.Popen(
            [sys.executable, *self._args],
            env=env,
            stdout=self._output,
            stderr=self._output,
        )
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"serve exited with {self.proc.returncode} during start-up")
            try:
                if httpx.get(f"{self.base_url}/readyz", timeout=1).status_code == 200:
                    return self.base_url
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"serve not ready within {timeout:.0f} s")
            time.sleep(0.05)

    def client(self) -> httpx.Client:
        """An HTTP client with the API key set."""
        return httpx.Client(base_url=self.base_url, headers={"X-API-KEY": self.api_key}, timeout=30)

    def kill(self) -> None:
        """SIGKILL, as a crash would."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)

    def stop(self, timeout: float = 60) -> int:
        """SIGTERM (drain, checkpoint, exit); returns the exit status."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                return self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        return self.proc.wait()

    def __enter__(self) -> ServeProcess:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
