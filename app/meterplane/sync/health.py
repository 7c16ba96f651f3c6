"""The standalone agent's only listening socket: ``/livez``, ``/readyz`` and ``/metrics``.

Nothing of the protocol is served here (the control plane never connects in); Kubernetes
probes and Prometheus scrapes are the only clients.
"""

from __future__ import annotations

from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from meterplane.core.threads import NamedThread


class HealthServer:
    """A tiny HTTP server on its own thread."""

    def __init__(self, host: str, port: int, ready: Callable[[], bool]) -> None:
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path == "/livez":
                    self._send(200, b'{"status": "UP"}', "application/json")
                elif self.path == "/readyz":
                    up = ready()
                    body = b'{"status": "UP"}' if up else b'{"status": "DOWN"}'
                    self._send(200 if up else 503, body, "application/json")
                elif self.path == "/metrics":
                    self._send(200, generate_latest(), CONTENT_TYPE_LATEST)
                else:
                    self._send(404, b'{"status": "NOT_FOUND"}', "application/json")

            def _send(self, status: int, body: bytes, ctype: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                return  # probes every few seconds would drown the failure lines

        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = NamedThread(target=self._server.serve_forever, name="health", daemon=True)

    def start(self) -> None:
        """Start serving."""
        self._thread.start()

    def stop(self) -> None:
        """Stop serving and release the port."""
        if self._thread.is_alive():  # shutdown() waits for serve_forever: only if it runs
            self._server.shutdown()
        self._server.server_close()
