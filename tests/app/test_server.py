"""The check fast path in uvicorn's protocol, over real sockets: same answers as the app,
errors through the app, order kept on a pipelined connection, fallbacks where it must not
apply."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import msgspec
import pytest
import uvicorn

from meterplane.http.app import FastCheck, create_app
from meterplane.http.server import http_config
from meterplane.plane import EmbeddedPlane
from tests.app.conftest import API_KEY

CHECK = "/api/v1/customers/{}/entitlements/check?featureId={}"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def server(plane: EmbeddedPlane) -> Iterator[tuple[str, EmbeddedPlane]]:
    app = create_app(plane.buffer, plane.decider, (API_KEY,))
    port = _free_port()
    srv = uvicorn.Server(http_config(app, "127.0.0.1", port, "warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not srv.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.01)
    yield f"http://127.0.0.1:{port}", plane
    srv.should_exit = True
    thread.join(timeout=10)


@pytest.fixture
def app_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Paths of the requests that reached the ASGI app (the fast path never does)."""
    calls: list[str] = []
    original = FastCheck.__call__

    async def spy(self: FastCheck, scope: dict[str, Any], receive: Any, send: Any) -> None:
        calls.append(scope["path"])
        await original(self, scope, receive, send)

    monkeypatch.setattr(FastCheck, "__call__", spy)
    return calls


def _read_responses(sock: socket.socket, n: int) -> list[tuple[int, dict[str, str], bytes]]:
    """``n`` HTTP/1.1 responses with content-length bodies, in the order they arrive."""
    buf = b""
    out = []
    while len(out) < n:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed after {len(out)} responses"
        buf += chunk
        while b"\r\n\r\n" in buf:
            head, rest = buf.split(b"\r\n\r\n", 1)
            lines = head.decode("latin-1").split("\r\n")
            headers = dict(line.lower().split(": ", 1) for line in lines[1:])
            size = int(headers["content-length"])
            if len(rest) < size:
                break
            out.append((int(lines[0].split()[1]), headers, rest[:size]))
            buf = rest[size:]
    return out


def test_fast_answers_equal_the_decider_and_skip_the_app(
    server: tuple[str, EmbeddedPlane], app_calls: list[str]
) -> None:
    base, plane = server
    with httpx.Client(base_url=base, headers={"X-API-KEY": API_KEY}) as client:
        for customer, feature in [("acme", "api-calls"), ("nobody", "sso"), ("acme", "seats")]:
            r = client.get(CHECK.format(customer, feature) + "&requestedUsage=2")
            assert r.status_code == 200
            assert r.headers["content-type"] == "application/json"
            want = msgspec.to_builtins(plane.decider.check(customer, feature, 2))
            assert r.json() == want
    assert app_calls == []  # every one answered by the protocol


def test_errors_go_through_the_app_on_the_same_connection(
    server: tuple[str, EmbeddedPlane], app_calls: list[str]
) -> None:
    base, _ = server
    with httpx.Client(base_url=base) as client:
        ok = client.get(CHECK.format("acme", "sso"), headers={"X-API-KEY": API_KEY})
        wrong = client.get(CHECK.format("acme", "sso"), headers={"X-API-KEY": "nope"})
        missing = client.get(
            "/api/v1/customers/acme/entitlements/check", headers={"X-API-KEY": API_KEY}
        )
        bad = client.get(
            CHECK.format("acme", "sso") + "&requestedUsage=-1", headers={"X-API-KEY": API_KEY}
        )
        again = client.get(CHECK.format("acme", "sso"), headers={"X-API-KEY": API_KEY})
    assert [r.status_code for r in (ok, wrong, missing, bad, again)] == [200, 401, 422, 422, 200]
    assert wrong.json()["error"]["code"] == "unauthorized"
    assert len(app_calls) == 3  # only the three errors


def test_pipelined_requests_are_answered_in_order(server: tuple[str, EmbeddedPlane]) -> None:
    base, _ = server
    port = int(base.rsplit(":", 1)[1])

    def get(path: str, key: str = API_KEY) -> bytes:
        return f"GET {path} HTTP/1.1\r\nHost: x\r\nX-API-KEY: {key}\r\n\r\n".encode()

    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(
            get(CHECK.format("acme", "sso"))
            + get(CHECK.format("acme", "sso"), key="nope")
            + get("/livez")
            + get(CHECK.format("globex", "api-calls"))
        )
        responses = _read_responses(sock, 4)
    assert [status for status, _, _ in responses] == [200, 401, 200, 200]
    assert msgspec.json.decode(responses[0][2])["featureId"] == "sso"
    assert msgspec.json.decode(responses[3][2])["customerId"] == "globex"


def test_http_1_0_and_percent_encoded_ids_fall_back_or_decode(
    server: tuple[str, EmbeddedPlane], app_calls: list[str]
) -> None:
    base, _ = server
    port = int(base.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(
            f"GET {CHECK.format('acme', 'sso')} HTTP/1.0\r\nX-API-KEY: {API_KEY}\r\n\r\n".encode()
        )
        [(status, _, body)] = _read_responses(sock, 1)
    assert status == 200
    assert msgspec.json.decode(body)["isGranted"] is True
    assert app_calls == ["/api/v1/customers/acme/entitlements/check"]  # 1.0: not keep-alive
    with httpx.Client(base_url=base, headers={"X-API-KEY": API_KEY}) as client:
        r = client.get(CHECK.format("ac%6De", "sso"))
    assert r.json()["customerId"] == "acme"
    assert len(app_calls) == 1


@pytest.mark.parametrize(
    "query",
    [
        b"featureId=api-calls",
        b"featureId=api-calls&requestedUsage=2&resourceId=r1",
        b"featureId=a&featureId=b",
        b"featureId=&requestedUsage",
        b"featureId=a%2Fb&resourceId=x+y",
        b"&&featureId=sso&",
    ],
)
def test_query_parsing_matches_the_standard_library(query: bytes) -> None:
    from urllib.parse import parse_qsl  # noqa: PLC0415 - the reference, only here

    from meterplane.http.app import _query  # noqa: PLC0415 - a private helper under test

    assert _query(query) == dict(parse_qsl(query.decode(), keep_blank_values=True))
