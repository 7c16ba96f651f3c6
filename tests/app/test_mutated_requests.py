"""Hundreds of mutated requests, seeded, through the server as ``serve`` runs it: none gets a
5xx, every refusal has the error shape, and what was accepted is counted exactly as the
validating model reads it, nothing more (refused batches) and nothing less (accepted
ones). The counting runs in the native core, which reads the body itself: a body it read
differently from msgspec would show here as a counter that disagrees."""

from __future__ import annotations

import json
import random
import socket
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from meterplane.aggregate.rebuild import compare, hot_batches, recompute
from meterplane.core.catalog import load_catalog
from meterplane.core.counters import CounterBook, Outcome
from meterplane.core.model import TimeWindow, decode_events, decode_usages
from meterplane.core.timeutil import iso, now_us, to_us
from meterplane.http.app import create_app
from meterplane.plane import EmbeddedPlane
from tests.app.conftest import API_KEY, Api, serving

MINUTE = 60_000_000
DAY = 1440 * MINUTE
CUSTOMERS = ["acme", "globex", "initech", "stranger", "ünï", "𝄞"]
DIMENSIONS: dict[str, Callable[[random.Random], dict[str, Any]]] = {
    "api_call": lambda r: {"region": r.choice(["us", "eu", "ap"])},
    "completion": lambda r: {"tokens": r.randint(1, 4000), "latency_ms": r.random() * 900},
    "login": lambda r: {"user": f"u{r.randint(0, 30)}"},
    "storage_snapshot": lambda r: {"gb": r.choice([1, 2.5, 900])},
}
ERROR_CODES = {400: "malformed_body", 413: "too_large", 422: "invalid_items"}


def _event(r: random.Random, key: str, now: int) -> dict[str, Any]:
    name = r.choice(list(DIMENSIONS))
    event = {
        "customerId": r.choice(CUSTOMERS),
        "eventName": name,
        "idempotencyKey": key,
        "timestamp": iso(now - r.randrange(30 * DAY)),
        "dimensions": DIMENSIONS[name](r),
    }
    if r.random() < 0.2:
        event["resourceId"] = f"r-{r.randrange(3)}"
    return event


def _usage(r: random.Random, key: str, now: int) -> dict[str, Any]:
    return {
        "customerId": r.choice(CUSTOMERS),
        "featureId": r.choice(["seats", "storage-gb", "api-calls", "no-such-feature"]),
        "value": r.choice([1, 2.5, -1, 0, 10**6]),
        "updateBehavior": r.choice(["DELTA", "SET"]),
        "timestamp": iso(now - r.randrange(DAY)),
        "idempotencyKey": key,
    }


def _on_item(
    r: random.Random, batch: dict[str, Any], change: Callable[[dict[str, Any]], None]
) -> None:
    items = next(iter(batch.values()))
    change(r.choice(items))


def _field(r: random.Random, item: dict[str, Any]) -> str:
    """A field to remove or retype. Not a usage report's key or any timestamp: without them
    the server takes a key of its own or the time of receipt, which the reference cannot
    know; a timestamp of another type is its own mutation."""
    optional = ("timestamp", "idempotencyKey") if "featureId" in item else ("timestamp",)
    return r.choice([name for name in item if name not in optional])


# Mutations of the batch as data: each may leave it valid or not; the server decides.
FIELD_VALUES: list[Any] = [None, 5, -1.5, True, [], {}, "", "x" * 300, "\u0000", "ü𝄞"]
STAMPS: list[Any] = [
    5,
    "",
    [],
    "2026-01-01T00:00:00",  # no offset
    "yesterday",
    "2026-02-30T00:00:00Z",
    "2026-11-21T25:00:00Z",
    "1970-01-01T00:00:00Z",
    "9999-12-31T23:59:59Z",
]
DATA_MUTATIONS: dict[str, Callable[[random.Random, dict[str, Any], int], None]] = {
    "valid": lambda r, b, now: None,
    "field removed": lambda r, b, now: _on_item(r, b, lambda item: item.pop(_field(r, item))),
    "field of another type": lambda r, b, now: _on_item(
        r, b, lambda item: item.__setitem__(_field(r, item), r.choice(FIELD_VALUES))
    ),
    "unknown field": lambda r, b, now: _on_item(r, b, lambda item: item.__setitem__("colour", 1)),
    "unknown batch field": lambda r, b, now: b.__setitem__("extra", []),
    "dimension value nested": lambda r, b, now: _on_item(
        r, b, lambda item: item.__setitem__("dimensions", {"region": r.choice([{"a": 1}, [1]])})
    ),
    "dimensions oversized": lambda r, b, now: _on_item(
        r,
        b,
        lambda item: item.__setitem__(
            "dimensions",
            r.choice([{"k": "v" * 1025}, {"k" * 129: 1}, {f"d{i}": i for i in range(65)}]),
        ),
    ),
    "dimension number out of range": lambda r, b, now: _on_item(
        r, b, lambda item: item.__setitem__("dimensions", {"tokens": r.choice([2**63, -(2**70)])})
    ),
    "timestamp bad": lambda r, b, now: _on_item(
        r, b, lambda item: item.__setitem__("timestamp", r.choice(STAMPS))
    ),
    "timestamp outside the window": lambda r, b, now: _on_item(
        r,
        b,
        lambda item: item.__setitem__("timestamp", iso(now + r.choice([-36 * DAY, 10 * MINUTE]))),
    ),
    "copy within the batch": lambda r, b, now: next(iter(b.values())).append(
        dict(r.choice(next(iter(b.values()))))
    ),
    "no items": lambda r, b, now: b.__setitem__(next(iter(b)), r.choice([[], None, {}, "x"])),
    "1,001 items": lambda r, b, now: b.__setitem__(
        next(iter(b)), (next(iter(b.values())) * 1001)[:1001]
    ),
}


def _swap_key(body: bytes) -> bytes:
    """A name given twice: the JSON stays valid and the last value is the one that counts."""
    return body.replace(b'"customerId":', b'"customerId":"decoy","customerId":', 1)


def _replace_byte(r: random.Random, body: bytes, new: bytes) -> bytes:
    i = r.randrange(len(body))
    return body[:i] + new + body[i + 1 :]


# Mutations of the encoded body.
BYTE_MUTATIONS: dict[str, Callable[[random.Random, bytes], bytes]] = {
    "truncated": lambda r, body: body[: r.randrange(len(body))],
    "a byte not UTF-8": lambda r, body: _replace_byte(r, body, b"\xff"),
    "a byte changed": lambda r, body: _replace_byte(r, body, bytes([r.randrange(32, 127)])),
    "trailing garbage": lambda r, body: body + r.choice([b"x", b"{}", b"\x00"]),
    "byte order mark": lambda r, body: b"\xef\xbb\xbf" + body,
    "number literals JSON lacks": lambda r, body: body.replace(
        b'"dimensions":{',
        b'"dimensions":{"n":' + r.choice([b"NaN", b"Infinity", b"1e400"]) + b",",
        1,
    ),
    "lone surrogate": lambda r, body: body.replace(
        b'"idempotencyKey":"', b'"idempotencyKey":"\\ud800', 1
    ),
    "name given twice": lambda r, body: _swap_key(body),
    "escaped names": lambda r, body: body.replace(b'"eventName"', b'"event\\u004eame"'),
}


def _request(r: random.Random, j: int, now: int) -> tuple[str, str, bytes]:
    """(route, mutation, body) for the j-th request: a batch of fresh keys, mutated."""
    kind = "events" if r.random() < 0.8 else "usages"
    make = _event if kind == "events" else _usage
    batch = {kind: [make(r, f"m{j}-{i}", now) for i in range(r.randint(1, 20))]}
    if r.random() < 0.5:
        mutation = r.choice(list(DATA_MUTATIONS))
        DATA_MUTATIONS[mutation](r, batch, now)
        body = json.dumps(batch, ensure_ascii=r.random() < 0.5).encode()
    else:
        mutation = r.choice(list(BYTE_MUTATIONS))
        body = BYTE_MUTATIONS[mutation](r, json.dumps(batch, separators=(",", ":")).encode())
    route = "/api/v1/events" if kind == "events" else "/api/v1/usage"
    return route, mutation, body


class Reference:
    """What the accepted bodies count to, by the validating model and the Python book."""

    WINDOW = TimeWindow(lateness_us=100 * 365 * DAY, ahead_us=365 * DAY)

    def __init__(self) -> None:
        self.book = CounterBook(load_catalog())
        self.seen: set[tuple[str, str]] = set()
        self.out = Outcome()

    def accept(self, route: str, body: bytes, received: int) -> None:
        if route.endswith("events"):
            for e in decode_events(body, received, self.WINDOW):
                if self._fresh(e.customerId, e.idempotencyKey):
                    ts = received if e.timestamp is None else to_us(e.timestamp)
                    self.book.apply_event(
                        e.customerId,
                        e.eventName,
                        e.idempotencyKey,
                        ts,
                        e.dimensions,
                        e.resourceId or "",
                        self.out,
                    )
            return
        for u in decode_usages(body, received, self.WINDOW):
            assert u.idempotencyKey is not None
            assert u.timestamp is not None
            if self._fresh(u.customerId, u.idempotencyKey):
                self.book.apply_usage(
                    u.customerId,
                    u.featureId,
                    u.idempotencyKey,
                    to_us(u.timestamp),
                    u.value,
                    u.updateBehavior == "SET",
                    u.resourceId or "",
                    self.out,
                )

    def _fresh(self, customer: str, key: str) -> bool:
        seen = (customer, key) in self.seen
        self.seen.add((customer, key))
        return not seen


def _assert_error_shape(status: int, payload: dict[str, Any], body: bytes) -> None:
    error = payload["error"]
    assert error["code"] == ERROR_CODES[status], (status, payload, body[:200])
    assert isinstance(error["message"], str)
    assert error["message"]
    for detail in error.get("details") or []:
        assert isinstance(detail["message"], str)
        assert detail["message"]
        assert detail["index"] is None or isinstance(detail["index"], int)


@pytest.mark.parametrize("seed", range(3))
def test_mutated_batches_get_no_5xx_and_count_exactly_what_was_accepted(
    seed: int, plane: EmbeddedPlane
) -> None:
    r = random.Random(seed)
    reference = Reference()
    statuses: dict[str, set[int]] = {}
    accepted: list[bytes] = []
    app = create_app(plane.buffer, plane.decider, (API_KEY,), max_body_bytes=200_000)
    with (
        serving(app) as port,
        httpx.Client(base_url=f"http://127.0.0.1:{port}", headers={"X-API-KEY": API_KEY}) as client,
    ):
        now = now_us()
        for j in range(150):
            route, mutation, body = _request(r, j, now)
            if accepted and r.random() < 0.05:  # an accepted batch again: counted once
                route, mutation, body = "/api/v1/events", "resent", r.choice(accepted)
            received = now_us()
            response = client.post(route, content=body)
            status = response.status_code
            statuses.setdefault(mutation, set()).add(status)
            assert status in (202, 400, 413, 422), (mutation, status, response.text, body[:300])
            if status == 202:
                reference.accept(route, body, received)
                if route.endswith("events"):
                    accepted.append(body)
            else:
                _assert_error_shape(status, response.json(), body)
    Api(plane).settle()
    got = sorted((ck, repr(v)) for ck, _, v in plane.aggregator.book.items())
    want = sorted((ck, repr(v)) for ck, _, v in reference.book.items())
    assert got == want
    assert len(plane.aggregator.dedup) == len(reference.seen)
    # and the raw rows stored for them count to the same again (what ``rebuild`` checks)
    plane.aggregator.drain()  # beside the running thread: it waits
    rows = hot_batches(plane.engine, plane.log.durable_end)
    rebuilt, applied = recompute(load_catalog(), rows)
    assert applied == len(reference.seen)
    assert compare(plane.aggregator.book, rebuilt) == []
    # the run covered both outcomes, and refusals of every kind
    assert 202 in set().union(*statuses.values())
    assert {400, 413, 422} <= set().union(*statuses.values())


def _raw_get(port: int, target: bytes) -> int:
    """The status of one GET written as raw bytes (so any byte can stand in the target)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(
            b"GET "
            + target
            + b" HTTP/1.1\r\nHost: x\r\nX-API-KEY: "
            + API_KEY.encode()
            + b"\r\n\r\n"
        )
        head = b""
        while b"\r\n" not in head:
            chunk = sock.recv(4096)
            if not chunk:
                break
            head += chunk
    return int(head.split(b" ", 2)[1]) if head.startswith(b"HTTP/1.1 ") else 0


CHECK_PARTS = [
    b"acme",
    b"%ff",
    b"%00",
    b"%2F",
    b"\xc3\xbc",
    b"a" * 300,
    b"",
    b"%",
    b"..",
    b"%F0%9D%84%9E",
]
CHECK_QUERIES = [
    b"featureId=api-calls",
    b"featureId=%ff",
    b"featureId=",
    b"featureId=api-calls&featureId=tokens",
    b"featureId=api-calls&requestedUsage=1e400",
    b"featureId=api-calls&requestedUsage=%00",
    b"requestedUsage=2",
    b"featureId=" + b"x" * 5000,
    b"featureId=api-calls&&=&",
]


def test_mutated_checks_get_a_decision_or_a_4xx(plane: EmbeddedPlane) -> None:
    r = random.Random(11)
    app = create_app(plane.buffer, plane.decider, (API_KEY,))
    seen = set()
    with serving(app) as port:
        for _ in range(120):
            customer = r.choice(CHECK_PARTS)
            query = r.choice(CHECK_QUERIES)
            suffix = r.choice(
                [b"/entitlements/check?" + query, b"/entitlements", b"/entitlements/"]
            )
            target = b"/api/v1/customers/" + customer + suffix
            status = _raw_get(port, target)
            seen.add(status)
            assert 200 <= status < 500, (target, status)
    assert {200, 422} <= seen
