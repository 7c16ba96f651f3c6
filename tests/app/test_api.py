"""The HTTP API over a real embedded plane (log on disk, aggregator thread, chdb)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest

from meterplane.core.settings import load_settings
from meterplane.core.timeutil import iso, now_us
from meterplane.http.app import asgi, create_app
from meterplane.plane import EmbeddedPlane
from tests import aio
from tests.app.conftest import API_KEY, Api

DAY = 86_400_000_000


def _events(n: int, prefix: str = "k", customer: str = "acme", **extra: Any) -> bytes:
    return json.dumps(
        {
            "events": [
                {
                    "customerId": customer,
                    "eventName": "api_call",
                    "idempotencyKey": f"{prefix}{i}",
                    **extra,
                }
                for i in range(n)
            ]
        }
    ).encode()


def _stored(plane: EmbeddedPlane) -> int:
    plane.aggregator.drain()  # beside the running thread: it waits
    t = plane.engine.query_arrow("SELECT count() AS n FROM events FINAL")
    return int(t.column("n")[0].as_py())


def test_same_1000_event_batch_three_times_concurrently_counts_once(api: Api) -> None:
    body = _events(1000)
    responses = api.concurrently([("POST", "/api/v1/events", {"content": body})] * 3)
    assert [r.status_code for r in responses] == [202, 202, 202]
    assert all(r.json() == {"accepted": 1000} for r in responses)
    api.settle()
    assert api.check("acme", "api-calls")["currentUsage"] == 1000
    assert _stored(api.plane) == 1000


def test_1001_events_is_413_and_nothing_stored(api: Api) -> None:
    r = api.request("POST", "/api/v1/events", content=_events(1001))
    assert r.status_code == 413
    assert r.json()["error"]["code"] == "too_large"
    api.settle()
    assert api.check("acme", "api-calls")["currentUsage"] == 0
    assert _stored(api.plane) == 0


def test_invalid_event_at_index_7_is_422_and_nothing_counted(api: Api) -> None:
    batch = json.loads(_events(20))
    batch["events"][7]["timestamp"] = iso(now_us() - 36 * DAY)
    r = api.request("POST", "/api/v1/events", json=batch)
    assert r.status_code == 422
    details = r.json()["error"]["details"]
    assert details == [
        {"index": 7, "field": "timestamp", "message": "older than the lateness window (35 days)"}
    ]
    api.settle()
    assert api.check("acme", "api-calls")["currentUsage"] == 0
    assert _stored(api.plane) == 0


def test_event_ten_minutes_ahead_is_422(api: Api) -> None:
    r = api.request(
        "POST", "/api/v1/events", content=_events(1, timestamp=iso(now_us() + 600_000_000))
    )
    assert r.status_code == 422
    assert r.json()["error"]["details"][0]["field"] == "timestamp"


@pytest.mark.parametrize(
    "query", ["?featureId=api-calls&requestedUsage=-1", "", "?featureId=" + "x" * 300]
)
@pytest.mark.parametrize("headers", [{"X-API-KEY": "nope"}, {"X-API-KEY": ""}])
def test_a_caller_without_a_valid_key_gets_401_before_any_validation(
    api: Api, query: str, headers: dict[str, str]
) -> None:
    for path in ("/entitlements/check", "/entitlements"):
        r = api.request("GET", "/api/v1/customers/acme" + path + query, headers=headers)
        assert r.status_code == 401, (path, query, r.text)
        assert r.json()["error"]["code"] == "unauthorized"


def test_auth_and_malformed_json(api: Api) -> None:
    url = "/api/v1/events"
    assert (
        api.request("POST", url, content=_events(1), headers={"X-API-KEY": ""}).status_code == 401
    )
    wrong = api.request("POST", url, content=_events(1), headers={"X-API-KEY": "x" * 24})
    assert wrong.status_code == 401
    assert wrong.json()["error"]["code"] == "unauthorized"
    check = "/api/v1/customers/acme/entitlements/check?featureId=api-calls"
    assert api.request("GET", check, headers={"X-API-KEY": "nope"}).status_code == 401
    bad = api.request("POST", url, content=b'{"events": [')
    assert bad.status_code == 400
    assert bad.json()["error"]["code"] == "malformed_body"
    assert api.request("POST", url, content=b"\xff\xfe\x00").status_code == 400


def test_body_over_the_size_limit_is_413(api: Api) -> None:
    big = _events(1000, prefix="p" * 200, dimensions={"pad": "x" * 1000})
    assert len(big) > 1_000_000
    r = api.request("POST", "/api/v1/events", content=big * 4)
    assert r.status_code == 413


def test_late_event_lands_in_its_own_period(api: Api) -> None:
    # acme's period runs from the 1st of each month; 25 days ago is last month or earlier
    # in the same month depending on today's date, so compare through the decision window.
    now = now_us()
    late = json.dumps(
        {
            "events": [
                {
                    "customerId": "initech",  # free plan: api-calls reset daily
                    "eventName": "api_call",
                    "idempotencyKey": "late-1",
                    "timestamp": iso(now - 3 * DAY),
                }
            ]
        }
    )
    assert api.request("POST", "/api/v1/events", content=late).status_code == 202
    api.settle()
    assert api.check("initech", "api-calls")["currentUsage"] == 0
    book = api.plane.aggregator.book
    counted = [(k, v) for k, _, v in book.items() if k[:2] == ("initech", "api-calls")]
    assert len(counted) == 1
    (key, value) = counted[0]
    assert value == 1
    assert key[2] <= now - 3 * DAY < key[2] + DAY  # the daily period containing the event


def test_usage_set_then_delta_over_http(api: Api) -> None:
    t = now_us()
    body = {
        "usages": [
            {
                "customerId": "acme",
                "featureId": "seats",
                "value": 10,
                "updateBehavior": "SET",
                "timestamp": iso(t - 3_000_000),
                "idempotencyKey": "s",
            },
            {
                "customerId": "acme",
                "featureId": "seats",
                "value": 3,
                "timestamp": iso(t - 2_000_000),
                "idempotencyKey": "d",
            },
            {
                "customerId": "acme",
                "featureId": "seats",
                "value": 50,
                "timestamp": iso(t - 9_000_000),
                "idempotencyKey": "old",
            },
        ]
    }
    assert api.request("POST", "/api/v1/usage", json=body).status_code == 202
    api.settle()
    d = api.check("acme", "seats", requestedUsage=12)
    assert (d["currentUsage"], d["usageLimit"], d["isGranted"]) == (13, 25, True)
    assert not api.check("acme", "seats", requestedUsage=13)["isGranted"]


def test_check_validation_and_unknowns_are_decisions(api: Api) -> None:
    assert api.check("nobody", "api-calls")["accessDeniedReason"] == "CustomerNotFound"
    assert api.check("acme", "nothing")["accessDeniedReason"] == "FeatureNotFound"
    url = "/api/v1/customers/acme/entitlements/check"
    assert api.request("GET", url).status_code == 422  # featureId missing
    for bad in ("-1", "nan", "inf", "-inf", "abc", "1e400"):
        r = api.request("GET", url, params={"featureId": "api-calls", "requestedUsage": bad})
        assert r.status_code == 422, bad
        error = r.json()["error"]
        assert error["code"] == "invalid_request", bad
        assert [d["field"] for d in error["details"]] == ["query.requestedUsage"], bad
    listed = api.request("GET", "/api/v1/customers/acme/entitlements").json()["entitlements"]
    assert {d["featureId"] for d in listed} >= {"api-calls", "sso", "seats"}


def test_health_metrics_and_openapi(api: Api) -> None:
    assert api.request("GET", "/livez").json() == {"status": "UP"}
    assert api.request("GET", "/readyz").json() == {"status": "UP"}
    api.request("POST", "/api/v1/events", content=_events(2) + b"")
    api.request("POST", "/api/v1/events", content=_events(2))
    api.settle()
    text = api.request("GET", "/metrics").text
    assert "meterplane_duplicates_dropped_total" in text
    schema = api.request("GET", "/openapi.json").json()
    assert set(schema["paths"]) >= {
        "/api/v1/events",
        "/api/v1/usage",
        "/api/v1/customers/{customerId}/entitlements/check",
        "/api/v1/customers/{customerId}/entitlements",
        "/livez",
        "/readyz",
    }
    event = schema["components"]["schemas"]["Event"]
    assert set(event["required"]) == {"customerId", "eventName", "idempotencyKey"}
    assert event["additionalProperties"] is False


def test_backlog_over_limit_is_503_then_nothing_acked_is_lost(tmp_path: Path) -> None:
    settings = load_settings(
        env={}, data_dir=tmp_path / "d", api_keys=API_KEY, max_backlog_bytes=1024 * 1024
    )
    plane = EmbeddedPlane(settings)  # not started: nothing drains the backlog yet
    api = Api(plane)
    acked = 0
    for i in range(40):
        r = api.request("POST", "/api/v1/events", content=_events(1000, prefix=f"b{i}-"))
        if r.status_code == 503:
            break
        assert r.status_code == 202
        acked += 1000
    assert r.status_code == 503
    assert r.headers["Retry-After"] == "1"
    assert r.json()["error"]["code"] == "buffer_unavailable"
    assert api.request("GET", "/readyz").status_code == 503
    assert 0 < acked < 40_000
    plane.start()
    try:
        api.settle()
        assert api.check("acme", "api-calls")["currentUsage"] == acked
        r = api.request("POST", "/api/v1/events", content=_events(1, prefix="after"))
        assert r.status_code == 202
    finally:
        plane.stop()


def test_api_keys_can_be_rotated(api: Api) -> None:
    api.app.state.auth.set_keys(("rotated-key-0123456789",))
    assert api.request("POST", "/api/v1/events", content=_events(1)).status_code == 401
    r = api.request(
        "POST",
        "/api/v1/events",
        content=_events(1),
        headers={"X-API-KEY": "rotated-key-0123456789"},
    )
    assert r.status_code == 202
    assert API_KEY != "rotated-key-0123456789"


def test_group_commit_shares_fsyncs(api: Api) -> None:
    before = api.plane.log.fsyncs
    bodies = [_events(10, prefix=f"g{i}-") for i in range(40)]
    responses = api.concurrently([("POST", "/api/v1/events", {"content": b}) for b in bodies])
    assert all(r.status_code == 202 for r in responses)
    assert api.plane.log.fsyncs - before < 40


def test_unknown_route_is_404_json(api: Api) -> None:
    r = api.request("GET", "/api/v2/nothing")
    assert r.status_code == 404
    assert msgspec.json.decode(r.content)["error"]["code"] == "not_found"


def _late(n: int, at: int) -> bytes:
    batch = json.loads(_events(n, prefix="late"))
    batch["events"][at]["timestamp"] = iso(now_us() - 36 * DAY)
    return json.dumps(batch).encode()


_USAGE = msgspec.json.encode(
    {"usages": [{"customerId": "acme", "featureId": "seats", "value": 2, "idempotencyKey": "u"}]}
)
_WRONG_KEY = {"X-API-KEY": "x" * 24}
INGEST_CASES = {
    "events accepted": ("/api/v1/events", _events(3, prefix="same"), {}),
    "usage accepted": ("/api/v1/usage", _USAGE, {}),
    "no key": ("/api/v1/events", _events(1), {"X-API-KEY": ""}),
    "wrong key": ("/api/v1/events", _events(1), _WRONG_KEY),
    "malformed": ("/api/v1/events", b'{"events": [', {}),
    "not utf-8": ("/api/v1/usage", b"\xff\xfe\x00", {}),
    "too old at index 7": ("/api/v1/events", _late(20, 7), {}),
    "wrong type": ("/api/v1/usage", b'{"usages": [{"customerId": 1}]}', {}),
    "unknown top-level field": ("/api/v1/usage", _USAGE[:-1] + b', "extra": 1}', {}),
    "1,001 events": ("/api/v1/events", _events(1001), {}),
    "over the body limit": ("/api/v1/events", _events(1000, prefix="p" * 200), {}),
}


@pytest.mark.parametrize("case", INGEST_CASES)
def test_the_ingest_fast_path_answers_as_the_routes_do(plane: EmbeddedPlane, case: str) -> None:
    """Served, a batch skips FastAPI (``FastCheck``): every answer must be the routes' own."""
    path, body, headers = INGEST_CASES[case]
    app = create_app(plane.buffer, plane.decider, (API_KEY,), max_body_bytes=100_000)
    routed: list[str] = []

    async def routes(scope: dict[str, Any], receive: Any, send: Any) -> None:
        routed.append(scope["path"])
        await app(scope, receive, send)

    async def post(target: Any) -> httpx.Response:
        transport = httpx.ASGITransport(app=target)
        async with httpx.AsyncClient(transport=transport, base_url="http://plane") as client:
            return await client.post(path, content=body, headers={"X-API-KEY": API_KEY, **headers})

    fast, slow = aio.run(post(asgi(app))), aio.run(post(routes))
    assert routed == [path]  # the second went through the routes
    assert asgi(app).app is app
    assert (fast.status_code, fast.json()) == (slow.status_code, slow.json())
    assert fast.headers["content-type"] == slow.headers["content-type"] == "application/json"
    assert fast.headers.get("retry-after") == slow.headers.get("retry-after")


def test_served_batches_skip_the_routes(plane: EmbeddedPlane) -> None:
    app = create_app(plane.buffer, plane.decider, (API_KEY,))
    fast = asgi(app)
    reached: list[str] = []
    inner = fast.app

    async def spy(scope: dict[str, Any], receive: Any, send: Any) -> None:
        reached.append(scope["path"])
        await inner(scope, receive, send)

    fast.app = spy

    async def run() -> list[int]:
        transport = httpx.ASGITransport(app=fast)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://plane", headers={"X-API-KEY": API_KEY}
        ) as client:
            ok = await client.post("/api/v1/events", content=_events(2, prefix="fast"))
            bad = await client.post("/api/v1/events", content=b'{"events": [')
            health = await client.get("/livez")
            return [ok.status_code, bad.status_code, health.status_code]

    assert aio.run(run()) == [202, 400, 200]
    assert reached == ["/livez"]  # both batches, the good and the bad, took the fast path
