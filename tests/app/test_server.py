"""The check fast path in uvicorn's protocol, over real sockets: same answers as the app,
errors through the app, order kept on a pipelined connection, fallbacks where it must not
apply; and ingest bodies that arrive in pieces, within and over the body limit."""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Iterator
from typing import Any

import httpx
import msgspec
import pytest
from fastapi import FastAPI
from prometheus_client.parser import text_string_to_metric_families

from meterplane.http.app import FastCheck, create_app
from meterplane.plane import EmbeddedPlane
from tests.app.conftest import API_KEY, Api, serving

CHECK = "/api/v1/customers/{}/entitlements/check?featureId={}"


@pytest.fixture
def served(plane: EmbeddedPlane) -> Iterator[tuple[str, EmbeddedPlane, FastAPI]]:
    app = create_app(plane.buffer, plane.decider, (API_KEY,))
    with serving(app) as port:
        yield f"http://127.0.0.1:{port}", plane, app


@pytest.fixture
def server(served: tuple[str, EmbeddedPlane, FastAPI]) -> tuple[str, EmbeddedPlane]:
    base, plane, _ = served
    return base, plane


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


@pytest.fixture
def body_reads(monkeypatch: pytest.MonkeyPatch) -> list[list[int]]:
    """For each request that reached the app, the sizes of the body pieces it was handed."""
    reads: list[list[int]] = []
    original = FastCheck.__call__

    async def spy(self: FastCheck, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":  # the lifespan
            await original(self, scope, receive, send)
            return
        sizes: list[int] = []
        reads.append(sizes)

        async def counted() -> Any:
            message = await receive()
            if message["type"] == "http.request":
                sizes.append(len(message.get("body", b"")))
            return message

        await original(self, scope, counted, send)

    monkeypatch.setattr(FastCheck, "__call__", spy)
    return reads


@pytest.fixture
def parsed(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Paths of the checks read from scratch (not recalled from their exact bytes)."""
    calls: list[str] = []
    original = FastCheck.route

    def spy(self: FastCheck, path: str, query: bytes, headers: Any) -> Any:
        calls.append(path)
        return original(self, path, query, headers)

    monkeypatch.setattr(FastCheck, "route", spy)
    return calls


def _port(served: tuple[Any, ...]) -> int:
    """The port of a ``server`` or ``served`` fixture (its first item is the base URL)."""
    return int(str(served[0]).rsplit(":", 1)[1])


def _get(path: str, key: str = API_KEY, extra: str = "") -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: x\r\n{extra}X-API-KEY: {key}\r\n\r\n".encode()


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
    port = _port(server)

    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(
            _get(CHECK.format("acme", "sso"))
            + _get(CHECK.format("acme", "sso"), key="nope")
            + _get("/livez")
            + _get(CHECK.format("globex", "api-calls"))
        )
        responses = _read_responses(sock, 4)
    assert [status for status, _, _ in responses] == [200, 401, 200, 200]
    assert msgspec.json.decode(responses[0][2])["featureId"] == "sso"
    assert msgspec.json.decode(responses[3][2])["customerId"] == "globex"


def test_http_1_0_and_percent_encoded_ids_fall_back_or_decode(
    server: tuple[str, EmbeddedPlane], app_calls: list[str]
) -> None:
    base, _ = server
    port = _port(server)
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


def _ask(sock: socket.socket, request: bytes) -> tuple[int, dict[str, Any]]:
    sock.sendall(request)
    [(status, _, body)] = _read_responses(sock, 1)
    return status, msgspec.json.decode(body)


def test_a_repeated_check_is_read_once_and_decided_afresh(
    served: tuple[str, EmbeddedPlane, FastAPI], parsed: list[str], app_calls: list[str]
) -> None:
    base, plane, _ = served
    port = _port(served)
    request = _get(CHECK.format("acme", "api-calls"))
    with socket.create_connection(("127.0.0.1", port)) as sock:
        status, before = _ask(sock, request)
        assert status == 200
        event = {"customerId": "acme", "eventName": "api_call", "idempotencyKey": "r1"}
        with httpx.Client(base_url=base, headers={"X-API-KEY": API_KEY}) as client:
            assert client.post("/api/v1/events", json={"events": [event]}).status_code == 202
        Api(plane).settle()  # the aggregator thread has applied it
        status, after = _ask(sock, request)
    assert status == 200
    assert after["currentUsage"] == before["currentUsage"] + 1  # decided now, not recalled
    assert parsed == ["/api/v1/customers/acme/entitlements/check"]  # read once
    assert app_calls == ["/api/v1/events"]


def test_rotated_keys_forget_what_requests_were_found_to_ask(
    served: tuple[str, EmbeddedPlane, FastAPI], app_calls: list[str]
) -> None:
    _, _, app = served
    port = _port(served)
    request = _get(CHECK.format("acme", "sso"))
    with socket.create_connection(("127.0.0.1", port)) as sock:
        assert _ask(sock, request)[0] == 200
        app.state.auth.set_keys(("a-rotated-key-of-sufficient-length",))
        status, body = _ask(sock, request)
    assert status == 401
    assert body["error"]["code"] == "unauthorized"
    assert app_calls == ["/api/v1/customers/acme/entitlements/check"]


@pytest.mark.parametrize(
    "request_bytes",
    [
        _get(CHECK.format("acme", "sso"), extra="Connection: keep-alive\r\n"),
        _get(CHECK.format("acme", "sso"), extra="Content-Length: 0\r\n"),
        _get(CHECK.format("acme", "sso"), extra="Accept: */*\r\n").replace(
            b"X-API-KEY", b"x-api-key"
        ),
        _get(CHECK.format("acme", "sso")).replace(b"X-API-KEY: ", b"X-API-KEY:\t "),
        _get(CHECK.format("acme", "sso") + "&requestedUsage=2&resourceId=r%201"),
    ],
    ids=["connection-header", "content-length", "lower-case-name", "tab-before-value", "query"],
)
def test_checks_in_other_shapes_get_the_same_answer(
    server: tuple[str, EmbeddedPlane], request_bytes: bytes, app_calls: list[str]
) -> None:
    port = _port(server)
    with socket.create_connection(("127.0.0.1", port)) as sock:
        status, body = _ask(sock, request_bytes)
    assert status == 200
    assert body["customerId"] == "acme"
    assert body["featureId"] == "sso"
    assert body["isGranted"] is True
    assert app_calls == []


def test_a_check_split_across_reads_is_answered_once(server: tuple[str, EmbeddedPlane]) -> None:
    port = _port(server)
    request = _get(CHECK.format("acme", "sso"))
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for cut in (10, 40, len(request) - 2):
            sock.sendall(request[:cut])
            time.sleep(0.05)  # let the server read the first part on its own
            sock.sendall(request[cut:])
            [(status, _, body)] = _read_responses(sock, 1)
            assert status == 200
            assert msgspec.json.decode(body)["featureId"] == "sso"
        sock.sendall(_get("/livez"))
        assert _read_responses(sock, 1)[0][0] == 200  # nothing left over in between


def test_bytes_that_continue_a_request_are_never_read_as_a_new_one(
    server: tuple[str, EmbeddedPlane],
) -> None:
    port = _port(server)
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.sendall(b"GET /livez HTTP/1.1\r\nX-Note: ")
        time.sleep(0.05)
        # On its own this read is a whole check; here it is the rest of the /livez request.
        sock.sendall(_get(CHECK.format("acme", "sso")))
        [(status, _, body)] = _read_responses(sock, 1)
    assert status == 200
    assert "customerId" not in msgspec.json.decode(body)


def test_keep_alive_lasts_while_checks_flow_and_ends_when_they_stop(plane: EmbeddedPlane) -> None:
    app = create_app(plane.buffer, plane.decider, (API_KEY,))
    with (
        serving(app, keep_alive_s=0.6) as port,
        socket.create_connection(("127.0.0.1", port)) as sock,
    ):
        check = _get(CHECK.format("acme", "sso"))
        started = time.monotonic()
        for i in range(12):  # 1.8 s of checks, 0.15 s apart: three times the keep-alive
            if i == 6:
                sock.sendall(_get("/livez"))  # one request of uvicorn's own in between
                assert _read_responses(sock, 1)[0][0] == 200
            assert _ask(sock, check)[0] == 200
            time.sleep(0.15)
        assert time.monotonic() - started > 1.2
        sock.settimeout(5)
        idle = time.monotonic()
        assert sock.recv(1) == b""  # closed by the server once idle
        assert 0.3 < time.monotonic() - idle < 2.5


def _decisions(client: httpx.Client) -> dict[str, float]:
    """``meterplane_entitlement_checks_total`` by ``granted``, as scraped."""
    out = {}
    for family in text_string_to_metric_families(client.get("/metrics").text):
        if family.name == "meterplane_entitlement_checks":
            out = {s.labels["granted"]: s.value for s in family.samples}
    return out


def test_decisions_are_counted_in_the_metrics_whichever_path_answers(
    server: tuple[str, EmbeddedPlane],
) -> None:
    base, _ = server
    port = _port(server)
    with httpx.Client(base_url=base, headers={"X-API-KEY": API_KEY}) as client:
        before = _decisions(client)
        with socket.create_connection(("127.0.0.1", port)) as sock:
            for _ in range(3):
                assert _ask(sock, _get(CHECK.format("acme", "sso")))[1]["isGranted"] is True
            assert _ask(sock, _get(CHECK.format("nobody", "sso")))[1]["isGranted"] is False
        with socket.create_connection(("127.0.0.1", port)) as sock:  # HTTP/1.0: via the app
            http10 = f"GET {CHECK.format('acme', 'sso')} HTTP/1.0\r\nX-API-KEY: {API_KEY}\r\n\r\n"
            sock.sendall(http10.encode())
            assert _read_responses(sock, 1)[0][0] == 200
        after = _decisions(client)
    assert after["true"] - before.get("true", 0) == 4
    assert after["false"] - before.get("false", 0) == 1


def _batch(n: int, pad: int = 150) -> bytes:
    """An events batch of ``n`` events, each padded to about ``pad`` bytes more."""
    events = [
        {
            "customerId": "acme",
            "eventName": "api_call",
            "idempotencyKey": f"big-{i}",
            "dimensions": {"note": "x" * pad},
        }
        for i in range(n)
    ]
    return msgspec.json.encode({"events": events})


def _post(body: bytes, *, chunked: bool = False) -> bytes:
    head = f"POST /api/v1/events HTTP/1.1\r\nHost: x\r\nX-API-KEY: {API_KEY}\r\n"
    if not chunked:
        return f"{head}content-length: {len(body)}\r\n\r\n".encode() + body
    pieces = [body[i : i + 8192] for i in range(0, len(body), 8192)]
    framed = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces)
    return f"{head}transfer-encoding: chunked\r\n\r\n".encode() + framed + b"0\r\n\r\n"


def test_a_large_body_arriving_in_pieces_is_read_whole(
    server: tuple[str, EmbeddedPlane], body_reads: list[list[int]]
) -> None:
    _, plane = server
    port = _port(server)
    body = _batch(1000)
    assert len(body) > 150_000
    request = _post(body)
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for i in range(0, len(request), 16384):
            sock.sendall(request[i : i + 16384])
            time.sleep(0.002)  # the server reads many pieces, not one
        [(status, _, answer)] = _read_responses(sock, 1)
        assert (status, msgspec.json.decode(answer)) == (202, {"accepted": 1000})
        sock.sendall(_get("/livez"))  # the connection goes on with the next request
        assert _read_responses(sock, 1)[0][0] == 200
    assert sum(body_reads[0]) == len(body)
    assert plane.log.durable_end >= len(body)  # the 202 came after the fsync


def test_a_chunked_body_over_the_limit_is_refused_and_nothing_stored(
    plane: EmbeddedPlane,
) -> None:
    """No content-length to refuse it by: the limit is found while reading."""
    limit = 64 * 1024
    app = create_app(plane.buffer, plane.decider, (API_KEY,), max_body_bytes=limit)
    body = _batch(1000)
    before = plane.log.written_end
    with (
        serving(app) as port,
        socket.create_connection(("127.0.0.1", port)) as sock,
    ):
        sock.sendall(_post(body, chunked=True))
        [(status, _, answer)] = _read_responses(sock, 1)
    assert status == 413, answer
    assert b"limit" in answer
    assert plane.log.written_end == before


@pytest.fixture
def uvicorn_sends(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The ASGI messages that went through uvicorn's own ``send``."""
    from uvicorn.protocols.http.httptools_impl import RequestResponseCycle  # noqa: PLC0415

    sent: list[str] = []
    original = RequestResponseCycle.send

    async def spy(self: Any, message: Any) -> None:
        sent.append(message["type"])
        await original(self, message)

    monkeypatch.setattr(RequestResponseCycle, "send", spy)
    return sent


def _no_access_log(monkeypatch: pytest.MonkeyPatch) -> None:
    """As ``serve`` runs (no access log): pytest's log capture hangs handlers on uvicorn's
    access logger for each test's call, and uvicorn then logs every request (a path
    ``_respond`` leaves to uvicorn's ``send``)."""
    monkeypatch.setattr(logging.getLogger("uvicorn.access"), "handlers", [])


def _raw_answer(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection."""
    out = b""
    while chunk := sock.recv(65536):
        out += chunk
    return out


def test_a_202_is_written_whole_by_the_server_and_the_connection_goes_on(
    server: tuple[str, EmbeddedPlane], uvicorn_sends: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    _no_access_log(monkeypatch)
    port = _port(server)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(_post(_batch(10)))
        [(status, headers, answer)] = _read_responses(sock, 1)
        assert (status, headers, answer) == (
            202,
            {"content-type": "application/json", "content-length": str(len(answer))},
            b'{"accepted":10}',
        )
        sock.sendall(_post(_batch(10)))  # the same batch again: accepted (deduped later)
        assert _read_responses(sock, 1)[0][0] == 202
    assert uvicorn_sends == []  # neither went through uvicorn's send


@pytest.mark.parametrize(
    "version_and_header", [("HTTP/1.1", "Connection: close\r\n"), ("HTTP/1.0", "")]
)
def test_a_202_to_a_client_closing_says_so_and_closes(
    server: tuple[str, EmbeddedPlane],
    version_and_header: tuple[str, str],
    uvicorn_sends: list[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _no_access_log(monkeypatch)
    port = _port(server)
    version, header = version_and_header
    body = _batch(3)
    request = (
        f"POST /api/v1/events {version}\r\nHost: x\r\nX-API-KEY: {API_KEY}\r\n{header}"
        f"content-length: {len(body)}\r\n\r\n"
    ).encode() + body
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request)
        answer = _raw_answer(sock)  # returns once the server has closed
    head, _, payload = answer.partition(b"\r\n\r\n")
    assert head.split(b"\r\n")[0] == b"HTTP/1.1 202 Accepted"
    assert b"connection: close" in head.lower().split(b"\r\n")
    assert payload == b'{"accepted":3}'
    assert uvicorn_sends == []


def test_errors_to_a_post_still_go_through_uvicorns_send(
    server: tuple[str, EmbeddedPlane], uvicorn_sends: list[str]
) -> None:
    port = _port(server)
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(_post(b'{"events": [{"customerId": 7}]}'))
        [(status, _, _)] = _read_responses(sock, 1)
    assert status == 422
    assert uvicorn_sends == ["http.response.start", "http.response.body"]


def test_after_a_202_an_idle_connection_is_closed_at_the_keep_alive_timeout(
    plane: EmbeddedPlane, monkeypatch: pytest.MonkeyPatch, uvicorn_sends: list[str]
) -> None:
    _no_access_log(monkeypatch)
    app = create_app(plane.buffer, plane.decider, (API_KEY,))
    with (
        serving(app, keep_alive_s=0.6) as port,
        socket.create_connection(("127.0.0.1", port), timeout=5) as sock,
    ):
        sock.sendall(_post(_batch(5)))
        assert _read_responses(sock, 1)[0][0] == 202
        idle = time.monotonic()
        assert sock.recv(1) == b""  # closed by the server once idle
        assert 0.3 < time.monotonic() - idle < 2.5
    assert uvicorn_sends == []
