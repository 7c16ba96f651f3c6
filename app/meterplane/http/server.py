"""Serving the API with uvicorn, the same way for ``serve`` and the Kafka ingest service.

Entitlement checks are the hottest request, and most of their cost over HTTP was
uvicorn's per-request machinery rather than the decision (a task, an ASGI scope and two
socket writes per answer). ``CheckProtocol`` answers a well-formed, authorized check
straight from the parser's callback with one write; every other request, and every check
that is malformed, unauthorized, pipelined behind a request still in flight or not
keep-alive, takes uvicorn's ordinary path to the app, so errors keep one shape.
"""

from __future__ import annotations

import asyncio
import contextlib
import urllib.parse
from typing import Any

import httptools
import uvicorn
from fastapi import FastAPI
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from meterplane.core.settings import Settings
from meterplane.http.app import FastCheck, asgi

_HEAD = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n"


class _Answered:
    """Stands in for uvicorn's request cycle once a check is answered: complete, so the
    parser's later callbacks for this request, a lost connection and a graceful shutdown
    all treat it as done."""

    response_complete = True
    keep_alive = True

    def __init__(self) -> None:
        self.message_event = asyncio.Event()  # set on a lost connection; nothing waits


_ANSWERED: Any = _Answered()


class CheckProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with the check fast path (see the module docstring)."""

    def on_headers_complete(self) -> None:
        fast = self.app
        previous = self.cycle
        if (
            isinstance(fast, FastCheck)
            and self.parser.get_method() == b"GET"
            and self.parser.should_keep_alive()
            and self.parser.get_http_version() == "1.1"
            and not self.parser.should_upgrade()
            and (previous is None or previous.response_complete)
            and not self.pipeline
            and not self.flow.write_paused  # a client not reading: uvicorn's path waits
            and not self.server_state.default_headers
        ):
            url = httptools.parse_url(self.url)
            path = url.path.decode("ascii")
            if "%" in path:
                path = urllib.parse.unquote(path)
            body = fast.answer(path, url.query or b"", self.headers)
            if body is not None:
                self.cycle = _ANSWERED
                self.transport.write(_HEAD % len(body) + body)
                self.on_response_complete()
                return
        super().on_headers_complete()


def http_config(app: FastAPI, host: str, port: int, log_level: str = "info") -> uvicorn.Config:
    """uvicorn's configuration for the API (also what the tests serve)."""
    return uvicorn.Config(
        asgi(app),
        host=host,
        port=port,
        http=CheckProtocol,
        log_level=log_level.lower(),
        access_log=False,
        timeout_graceful_shutdown=25,
        # Clients reach the data plane through a Kubernetes Service, not a proxy that sets
        # X-Forwarded-*; and nothing reads Server/Date. Both cost time on every request.
        proxy_headers=False,
        server_header=False,
        date_header=False,
    )


def run_http(app: FastAPI, settings: Settings) -> None:
    """Serve until SIGTERM/SIGINT; in-flight requests get 25 s to finish (the drain)."""
    config = http_config(app, settings.http_host, settings.http_port, settings.log_level)
    server = uvicorn.Server(config)
    with contextlib.suppress(KeyboardInterrupt):  # re-raised after the drain, as uvicorn.run
        server.run()
    if not server.started:
        raise SystemExit(f"could not serve on {settings.http_host}:{settings.http_port}")
