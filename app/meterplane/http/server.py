"""Serving the API with uvicorn, the same way for ``serve`` and the Kafka ingest service.

Entitlement checks are the hottest request, and most of their cost over HTTP was
uvicorn's per-request machinery rather than the decision (a task, an ASGI scope and two
socket writes per answer). ``CheckProtocol`` answers a well-formed, authorized check
straight from the parser's callback with one write; every other request, and every check
that is malformed, unauthorized, pipelined behind a request still in flight or not
keep-alive, takes uvicorn's ordinary path to the app, so errors keep one shape.

The length of that path matters more than it looks: at 5,000 checks/s the serving thread
idles between requests and each one starts with cold caches, at about five times its warm
cost (``bench/check_path.py``). So a check that arrives whole in one read, as a plain
``GET``, is read by a strict pattern instead of llhttp's callbacks, and the exact bytes of
such a request are remembered with what they ask (``FastCheck.remember``): a client that
repeats a check costs one dictionary lookup before the decision, made afresh each time.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import re
import urllib.parse
from http import HTTPStatus
from typing import Any

import httptools
import uvicorn
from fastapi import FastAPI
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from meterplane.core.settings import Settings
from meterplane.http.app import RESPOND, CheckRoute, FastCheck, asgi

_STATUS_LINES = {s.value: b"HTTP/1.1 %d %s\r\n" % (s.value, s.phrase.encode()) for s in HTTPStatus}
_JSON_LENGTH = b"content-type: application/json\r\ncontent-length: %d\r\n"
_HEAD = _STATUS_LINES[200] + _JSON_LENGTH + b"\r\n"  # a check's answer, but for its length
# One whole, plain GET in one read: an origin-form target of RFC 3986 characters, HTTP/1.1,
# header lines of token names and visible values, nothing after the blank line. Stricter
# than llhttp, so what matches parses the same way there; anything else goes to llhttp.
_PLAIN_GET = re.compile(
    rb"GET (/[-A-Za-z0-9._~%!$&'()*+,;=:@/?]*) HTTP/1\.1\r\n"
    rb"((?:[-!#$%&'*+.^_`|~0-9A-Za-z]+:[\t\x20-\x7e]*\r\n)*)\r\n\Z"
)
# Headers that make a request more than a plain GET (a body, a close, an upgrade, an
# expectation): such requests take llhttp and uvicorn's path.
_NOT_PLAIN = frozenset(
    (b"connection", b"content-length", b"transfer-encoding", b"upgrade", b"expect")
)


class _Answered:
    """Stands in for uvicorn's request cycle once a check is answered: complete, so the
    parser's later callbacks for this request, a lost connection and a graceful shutdown
    all treat it as done."""

    response_complete = True
    keep_alive = True

    def __init__(self) -> None:
        self.message_event = asyncio.Event()  # set on a lost connection; nothing waits


_ANSWERED: Any = _Answered()


def _path(raw: bytes) -> str:
    path = raw.decode("ascii")
    return urllib.parse.unquote(path) if "%" in path else path


class CheckProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with the check fast path (see the module docstring)."""

    _in_message = False  # llhttp holds part of a request: the next bytes are its
    _idle_since = 0.0  # loop time of the last fast answer on this connection
    _own_timer: asyncio.TimerHandle | None = None  # the keep-alive timer _answered armed

    def data_received(self, data: bytes) -> None:
        fast = self.app
        # (a GET first: an ingest batch's first read is not hashed for a lookup that misses)
        if (
            data[:4] == b"GET "
            and isinstance(fast, FastCheck)
            and not self._in_message
            and self._may_answer()
        ):
            route = fast.recall(data)
            if route is None and data[-4:] == b"\r\n\r\n":
                route = self._plain_route(fast, data)
            if route is not None:
                if self.timeout_keep_alive_task is not self._own_timer:
                    self._unset_keepalive_if_required()  # uvicorn's, after a request of its own
                self._send(fast.respond(route))
                return
        super().data_received(data)

    def _may_answer(self) -> bool:
        """No response still owed on this connection, and nothing needing uvicorn's path."""
        previous = self.cycle
        return (
            (previous is None or previous.response_complete)
            and not self.pipeline
            and not self.flow.write_paused  # a client not reading: uvicorn's path waits
            and not self.server_state.default_headers
        )

    @staticmethod
    def _plain_route(fast: FastCheck, data: bytes) -> CheckRoute | None:
        """The route of a whole plain GET check (remembered), or None."""
        m = _PLAIN_GET.match(data)
        if m is None:
            return None
        headers = []
        for line in m.group(2).split(b"\r\n")[:-1]:
            name, _, value = line.partition(b":")
            name = name.lower()
            if name in _NOT_PLAIN:
                return None
            headers.append((name, value.strip(b" \t")))
        path, _, query = m.group(1).partition(b"?")
        route = fast.route(_path(path), query, headers)
        if route is not None:
            fast.remember(data, route)
        return route

    def _send(self, body: bytes) -> None:
        self.cycle = _ANSWERED
        self.transport.write(_HEAD % len(body) + body)
        self._answered()

    def _answered(self) -> None:
        """uvicorn's ``on_response_complete`` for a fast answer (never one with requests
        pipelined behind it), except that the keep-alive timer is armed once and its
        deadline moved lazily, instead of cancelled and re-created for every request."""
        self.server_state.total_requests += 1
        if self.transport.is_closing():
            return
        self.flow.resume_reading()
        self._idle_since = self.loop.time()
        if self.timeout_keep_alive_task is None:
            self._arm(self.timeout_keep_alive)

    def _arm(self, delay: float) -> None:
        self.timeout_keep_alive_task = self._own_timer = self.loop.call_later(
            delay, self._keep_alive_due
        )

    def _keep_alive_due(self) -> None:
        """Close an idle connection, or wait out what remains since the last answer."""
        self.timeout_keep_alive_task = self._own_timer = None
        left = self._idle_since + self.timeout_keep_alive - self.loop.time()
        if left > 0:
            self._arm(left)
        else:
            self.timeout_keep_alive_handler()

    def on_message_begin(self) -> None:
        self._in_message = True
        super().on_message_begin()

    def on_message_complete(self) -> None:
        self._in_message = False
        super().on_message_complete()

    def on_headers_complete(self) -> None:
        fast = self.app
        if (
            isinstance(fast, FastCheck)
            and self.parser.get_method() == b"GET"
            and self.parser.should_keep_alive()
            and self.parser.get_http_version() == "1.1"
            and not self.parser.should_upgrade()
            and self._may_answer()
        ):
            url = httptools.parse_url(self.url)
            body = fast.answer(_path(url.path), url.query or b"", self.headers)
            if body is not None:
                self._send(body)
                return
        super().on_headers_complete()
        cycle = self.cycle
        if cycle is not None and self.scope["method"] == "POST":
            respond = functools.partial(self._respond, cycle)
            self.scope["extensions"] = {RESPOND: {"respond": respond}}

    def _respond(self, cycle: Any, status: int, body: bytes) -> bool:
        """Answer ``cycle``'s request with a JSON body in one write (uvicorn's ``send``
        makes two, headers then body, each a trip through the loopback's TCP stack for the
        client to take) and complete it as ``send`` would. False where that does not apply:
        ``send`` then answers."""
        if (
            cycle.response_started
            or cycle.disconnected
            or cycle.access_log
            or cycle.default_headers
            or self.transport.is_closing()
        ):
            return False
        head = _STATUS_LINES[status] + _JSON_LENGTH % len(body)
        if not cycle.keep_alive:
            head += b"connection: close\r\n"
        cycle.response_started = cycle.response_complete = True
        self.transport.write(head + b"\r\n" + body)
        cycle.message_event.set()
        if not cycle.keep_alive:
            self.transport.close()
        cycle.on_response()
        return True


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
