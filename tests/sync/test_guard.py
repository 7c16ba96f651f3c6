"""The aggregates-only guard, the backoff and the URL rule of the agent's client."""

from __future__ import annotations

import random
from pathlib import Path

import msgspec
import pytest

from meterplane.core.errors import ConfigError
from meterplane.core.model import Event, Usage
from meterplane.sync.client import Backoff, ControlPlaneClient, check_url
from meterplane.sync.protocol import (
    RAW_EVENT_FIELDS,
    LifecycleBatch,
    LifecycleEvent,
    RawFieldLeak,
    Rollup,
    RollupBatch,
    check_aggregates_only,
    raw_fields,
)
from tests.sync.harness import ENV, TOKEN, Admin, ThreadControlPlane

ROLLUP = Rollup(
    rollupId="r1",
    customerId="acme",
    featureId="api-calls",
    periodStart="2026-11-01T00:00:00Z",
    periodEnd="2026-12-01T00:00:00Z",
    value=3,
    asOf="2026-11-20T00:00:00Z",
    revision=1,
)


def _fields(struct: type[msgspec.Struct]) -> set[str]:
    return set(struct.__struct_fields__)


def test_outbound_types_name_no_event_field_and_the_deny_list_covers_the_event() -> None:
    for t in (Rollup, RollupBatch, LifecycleEvent, LifecycleBatch):
        assert not _fields(t) & RAW_EVENT_FIELDS, t
    # Everything that identifies or describes one event is on the deny-list; customerId,
    # featureId and value are what an aggregate is keyed and measured by.
    event_only = (_fields(Event) | _fields(Usage)) - {"customerId", "featureId", "value"}
    assert event_only <= RAW_EVENT_FIELDS


@pytest.mark.parametrize(
    "payload",
    [
        {"rollups": [{"customerId": "a", "dimensions": {"region": "us"}}]},
        {"events": [{"x": {"y": [{"idempotencyKey": "k"}]}}]},
        {"eventName": "api_call"},
        {"rollups": [{"resourceId": "r"}]},
        {"rollups": [{"timestamp": "2026-11-20T00:00:00Z"}]},
    ],
)
def test_guard_refuses_raw_fields_at_any_depth(payload: object) -> None:
    body = msgspec.json.encode(payload)
    assert raw_fields(payload)
    with pytest.raises(RawFieldLeak):
        check_aggregates_only(body)


def test_guard_passes_aggregates() -> None:
    check_aggregates_only(msgspec.json.encode(RollupBatch([ROLLUP])))


def test_client_refuses_to_send_a_leaking_body_and_nothing_reaches_the_control_plane(
    tmp_path: Path,
) -> None:
    cp = ThreadControlPlane(tmp_path).start()
    admin = Admin(cp.url)
    client = ControlPlaneClient(cp.url, ENV, TOKEN)
    try:
        assert client.post_rollups(RollupBatch([ROLLUP])).accepted == 1
        leak = msgspec.json.encode({"rollups": [{**msgspec.to_builtins(ROLLUP), "dimensions": {}}]})
        with pytest.raises(RawFieldLeak, match="dimensions"):
            client._post("/rollups", leak)
        posted = [x for x in admin.exchanges() if x["method"] == "POST"]
        assert len(posted) == 1
        assert "dimensions" not in posted[0]["body"]
    finally:
        client.close()
        admin.close()
        cp.stop()


def test_backoff_grows_exponentially_with_jitter_up_to_the_cap() -> None:
    a = Backoff(0.5, 8.0, random.Random(1))
    b = Backoff(0.5, 8.0, random.Random(2))
    da = [a.next_delay() for _ in range(8)]
    db = [b.next_delay() for _ in range(8)]
    for n, (x, y) in enumerate(zip(da, db, strict=True)):
        d = min(8.0, 0.5 * 2**n)
        assert d / 2 <= x <= d
        assert d / 2 <= y <= d
    assert da != db  # jitter: two agents do not retry in lockstep
    assert da[3] > da[0]
    a.reset()
    assert a.next_delay() <= 0.5


@pytest.mark.parametrize(
    ("url", "ok"),
    [
        ("https://cp.example.com/", True),
        ("http://127.0.0.1:8090", True),
        ("http://localhost:8090", True),
        ("http://[::1]:8090", True),
        ("http://cp.example.com", False),
        ("ftp://cp.example.com", False),
    ],
)
def test_control_plane_url_must_be_https_except_loopback(url: str, ok: bool) -> None:
    if ok:
        assert not check_url(url).endswith("/")
    else:
        with pytest.raises(ConfigError, match="METERPLANE_CONTROL_PLANE_URL"):
            check_url(url)
