"""End to end, as processes: ``meterplane control-plane`` and ``meterplane serve`` (embedded
agent), then the standalone ``meterplane sync``, on loopback ports.

The tests share one control plane and one data plane and run in file order, each leaving
the world as the next expects (the control plane is restarted, the data plane SIGKILLed):
1. pushed changes change decisions within one poll interval;
2. control plane down: ingest and checks go on, the outbox grows, then drains;
3. SIGKILL of the data plane mid-publish: cursor resumes, resends recognized, totals exact;
4. every payload that reached the control plane is aggregates only;
5. the standalone agent listens only on its health port and connects only outward.
"""

from __future__ import annotations

import copy
import itertools
import json
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from meterplane.core.catalog import load_catalog
from meterplane.core.timeutil import iso, now_us
from meterplane.sync.protocol import (
    LifecycleBatch,
    LifecycleEvent,
    Rollup,
    RollupBatch,
    raw_fields,
)
from tests.sync.harness import (
    ADMIN,
    API_KEY,
    CATALOG,
    ENV,
    TOKEN,
    Admin,
    Proc,
    connections,
    free_port,
    listening_ports,
    sub,
    wait_http,
    wait_until,
)

pytestmark = pytest.mark.slow
POLL_S = 2.0  # the long-poll wait: a pushed change must be in force within it
ROTATED_KEY = "rotated-ingest-key-0123456789"
_keys = itertools.count()


class World:
    """One reference control plane and one embedded data plane, restartable in place."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.cp_port, self.dp_port = free_port(), free_port()
        self.cp_url = f"http://127.0.0.1:{self.cp_port}"
        self.dp_url = f"http://127.0.0.1:{self.dp_port}"
        self.data_dir = tmp / "dp"
        self.cp = Proc(
            [
                "control-plane",
                "--data-dir",
                str(tmp / "cp"),
                "--port",
                str(self.cp_port),
                "--environment",
                f"{ENV}={TOKEN}",
                "--admin-token",
                ADMIN,
            ],
            {},
            tmp / "cp.log",
        )
        self.dp_env = {
            "METERPLANE_DATA_DIR": str(self.data_dir),
            "METERPLANE_HTTP_PORT": str(self.dp_port),
            "METERPLANE_API_KEYS": API_KEY,
            "METERPLANE_CONTROL_PLANE_URL": self.cp_url,
            "METERPLANE_CONTROL_PLANE_TOKEN": TOKEN,
            "METERPLANE_CONTROL_PLANE_ENVIRONMENT": ENV,
            "METERPLANE_SYNC_POLL_INTERVAL_S": str(POLL_S),
            "METERPLANE_SYNC_ROLLUP_INTERVAL_S": "0.5",
            "METERPLANE_SYNC_BACKOFF_BASE_S": "0.1",
            "METERPLANE_SYNC_BACKOFF_MAX_S": "0.5",
            "METERPLANE_CHECKPOINT_INTERVAL_S": "0.2",
        }
        self.dp = Proc(["serve"], self.dp_env, tmp / "dp.log")
        self.admin = Admin(self.cp_url)
        self.key = API_KEY
        self.api = httpx.Client(base_url=self.dp_url, timeout=10)

    def start_cp(self) -> None:
        self.cp.start()
        wait_http(f"{self.cp_url}/livez", 30, self.cp)

    def start_dp(self) -> None:
        self.dp.start()
        wait_http(f"{self.dp_url}/readyz", 90, self.dp)

    def check(self, customer: str, feature: str = "api-calls") -> dict[str, Any]:
        r = self.api.get(
            f"/api/v1/customers/{customer}/entitlements/check",
            params={"featureId": feature, "requestedUsage": 0},
            headers={"X-API-KEY": self.key},
        )
        assert r.status_code == 200, r.text
        return dict(r.json())

    def ingest(self, customer: str, n: int, event: str = "api_call") -> None:
        events = [
            {
                "customerId": customer,
                "eventName": event,
                "idempotencyKey": f"evt-secret-{next(_keys)}",
                "timestamp": iso(now_us()),
                "dimensions": {"region": "eu-west-9", "tokens": 10},
                "resourceId": "res-secret-42",
            }
            for _ in range(n)
        ]
        r = self.api.post(
            "/api/v1/events", json={"events": events}, headers={"X-API-KEY": self.key}
        )
        assert r.status_code == 202, r.text

    def metric(self, name: str) -> float:
        text = self.api.get("/metrics").text
        total = 0.0
        for line in text.splitlines():
            if line.startswith(name) and not line.startswith("#"):
                total += float(line.rsplit(" ", 1)[1])
        return total

    def local_totals(self, pairs: list[tuple[str, str]]) -> dict[tuple[str, str, str], Any]:
        out = {}
        for customer, feature in pairs:
            d = self.check(customer, feature)
            out[customer, feature, d["usagePeriodStart"]] = d["currentUsage"]
        return out

    def close(self) -> None:
        self.dp.stop()
        self.cp.stop()
        self.api.close()
        self.admin.close()


def catalog(starter_limit: int = 5) -> dict[str, Any]:
    doc = copy.deepcopy(CATALOG)
    doc["plans"][0]["entitlements"]["api-calls"]["usageLimit"] = starter_limit
    return doc


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    w = World(tmp_path_factory.mktemp("sync-e2e"))
    try:
        w.start_cp()
        w.admin.push("catalog.updated", catalog())
        for customer, plan in (("acme", "starter"), ("hooli", "starter"), ("initech", "pro")):
            w.admin.push(
                "subscription.created", {"customerId": customer, "subscription": sub(plan)}
            )
        w.start_dp()
        yield w
    finally:
        w.close()


def _within_poll(w: World, what: str, pred: Any) -> float:
    t0 = time.monotonic()
    wait_until(pred, POLL_S * 3, what, every=0.02)
    took = time.monotonic() - t0
    assert took < POLL_S, f"{what} took {took:.2f}s, more than one poll interval ({POLL_S}s)"
    return took


def test_pushed_changes_change_decisions_within_one_poll_interval(world: World) -> None:
    w = world
    wait_until(lambda: w.check("acme")["usageLimit"] == 5, 20, "first sync")
    assert w.check("globex")["accessDeniedReason"] == "CustomerNotFound"

    w.admin.push("subscription.changed", {"customerId": "acme", "subscription": sub("pro")})
    _within_poll(w, "plan change", lambda: w.check("acme")["usageLimit"] == 100)

    w.admin.push("catalog.updated", catalog(starter_limit=7))
    _within_poll(w, "plan definition change", lambda: w.check("hooli")["usageLimit"] == 7)

    w.admin.push("subscription.created", {"customerId": "globex", "subscription": sub("pro")})
    _within_poll(w, "new subscription", lambda: w.check("globex")["isGranted"])

    w.admin.push("subscription.cancelled", {"customerId": "initech"})
    _within_poll(
        w,
        "cancellation",
        lambda: w.check("initech")["accessDeniedReason"] == "NoActiveSubscription",
    )

    grant = {
        "grantId": "g-1",
        "customerId": "acme",
        "featureId": "api-calls",
        "amount": 50,
        "validFrom": "2026-01-01T00:00:00Z",
    }
    w.admin.push("credit.granted", grant)
    _within_poll(w, "credit grant", lambda: w.check("acme")["usageLimit"] == 150)

    w.admin.push("governance.updated", {"apiKeys": [ROTATED_KEY]})
    probe = {"X-API-KEY": API_KEY}
    path = "/api/v1/customers/acme/entitlements/check?featureId=api-calls"
    _within_poll(w, "key rotation", lambda: w.api.get(path, headers=probe).status_code == 401)
    w.key = ROTATED_KEY
    assert w.check("acme")["usageLimit"] == 150


PAIRS = [
    ("acme", "api-calls"),
    ("globex", "api-calls"),
    ("globex", "tokens"),
    ("hooli", "api-calls"),
]


def test_control_plane_down_ingest_and_checks_go_on_and_the_outbox_drains(world: World) -> None:
    w = world
    w.ingest("acme", 3)
    wait_until(
        lambda: (
            w.admin.totals().get(("acme", "api-calls", w.check("acme")["usagePeriodStart"])) == 3
        ),
        10,
        "rollup",
    )
    failures = w.metric("meterplane_sync_failures_total")

    w.cp.kill()
    w.ingest("acme", 4)
    w.ingest("globex", 2)
    wait_until(lambda: w.check("acme")["currentUsage"] == 7, 5, "acme counted locally")
    wait_until(lambda: w.metric("meterplane_sync_outbox_pending") >= 2, 10, "outbox grows")
    grown = w.metric("meterplane_sync_outbox_pending")
    w.ingest("globex", 3, event="completion")
    w.ingest("hooli", 8)  # over hooli's limit of 7: a lifecycle event waits too
    wait_until(lambda: w.metric("meterplane_sync_outbox_pending") > grown, 10, "outbox grows more")
    decision = w.check("hooli")
    assert decision["currentUsage"] == 8
    assert not w.api.get(
        "/api/v1/customers/hooli/entitlements/check",
        params={"featureId": "api-calls"},
        headers={"X-API-KEY": w.key},
    ).json()["isGranted"]
    assert w.metric("meterplane_sync_failures_total") > failures
    assert w.metric('meterplane_sync_lag_seconds{direction="outbound"}') > 0
    failure_lines = [ln for ln in w.dp.stderr().splitlines() if "sync rollup failed" in ln]
    assert failure_lines
    assert all("\n" not in ln and "next try in" in ln for ln in failure_lines)

    w.start_cp()
    wait_until(lambda: w.metric("meterplane_sync_outbox_pending") == 0, 20, "outbox drained")
    local = w.local_totals(PAIRS)
    assert local[("globex", "tokens", w.check("globex", "tokens")["usagePeriodStart"])] == 30
    wait_until(
        lambda: all(w.admin.totals().get(k) == v for k, v in local.items()), 10, "exact totals"
    )
    events = w.admin.state()["lifecycleEvents"]
    assert [(e["customerId"], e["crossing"]) for e in events] == [("hooli", 1)]


def test_sigkill_resumes_from_the_cursor_and_resends_are_recognized(world: World) -> None:
    w = world
    before = w.admin.state()["counts"]
    w.admin.faults(ack_delay_s=30)  # the control plane stores batches but answers late
    w.ingest("acme", 5)
    start = w.check("acme")["usagePeriodStart"]
    wait_until(lambda: w.admin.totals().get(("acme", "api-calls", start)) == 12, 10, "stored at cp")
    w.dp.kill()  # SIGKILL while the agent waits for the acknowledgement
    w.admin.faults(ack_delay_s=0)

    # Changes pushed while the data plane is down are applied once it is back.
    w.admin.push(
        "credit.granted",
        {
            "grantId": "g-2",
            "customerId": "globex",
            "featureId": "tokens",
            "amount": 500,
            "validFrom": "2026-01-01T00:00:00Z",
        },
    )
    w.start_dp()
    _within_poll(w, "change while down", lambda: w.check("globex", "tokens")["usageLimit"] == 1500)
    assert w.check("acme")["usageLimit"] == 150  # grant g-1 still counted once
    wait_until(lambda: w.metric("meterplane_sync_outbox_pending") == 0, 20, "outbox drained")
    after = w.admin.state()["counts"]
    assert after["rollups_duplicate"] > before.get("rollups_duplicate", 0)  # resend recognized
    local = w.local_totals(PAIRS)
    assert local[("acme", "api-calls", start)] == 12
    assert all(w.admin.totals().get(k) == v for k, v in local.items())
    assert [e["crossing"] for e in w.admin.state()["lifecycleEvents"]] == [1]

    # No change applied twice: the journal holds each change of the feed once, in order.
    db = sqlite3.connect(w.data_dir / "sync" / "agent.sqlite")
    try:
        journal = db.execute("SELECT seq, change_id, outcome FROM applied ORDER BY seq").fetchall()
    finally:
        db.close()
    feed = w.admin.state()["changes"]
    assert [(j[0], j[1]) for j in journal] == [(c["seq"], c["id"]) for c in feed]
    assert {j[2] for j in journal} == {"applied"}


OUTBOUND_KEYS = (
    set(Rollup.__struct_fields__)
    | set(LifecycleEvent.__struct_fields__)
    | set(RollupBatch.__struct_fields__)
    | set(LifecycleBatch.__struct_fields__)
)


def _keys_of(obj: Any) -> set[str]:
    if isinstance(obj, dict):
        return set(obj) | set().union(*(_keys_of(v) for v in obj.values()))
    if isinstance(obj, list):
        return set().union(*(_keys_of(v) for v in obj))
    return set()


def test_every_payload_the_agent_sent_is_aggregates_only(world: World) -> None:
    w = world
    w.ingest("hooli", 8)  # over any limit hooli has: there is a crossing to report
    wait_until(
        lambda: any(x["path"].endswith("/lifecycle-events") for x in w.admin.exchanges()),
        20,
        "a lifecycle event sent",
    )
    wait_until(lambda: w.metric("meterplane_sync_outbox_pending") == 0, 20, "outbox drained")
    exchanges = w.admin.exchanges()
    posts = [x for x in exchanges if x["method"] == "POST"]
    assert {x["path"].rsplit("/", 1)[1] for x in posts} == {"rollups", "lifecycle-events"}
    for x in exchanges:
        assert x["path"].startswith(f"/v1/environments/{ENV}/"), x
        if x["method"] == "GET":
            assert x["body"] == ""
            assert {kv.split("=")[0] for kv in x["query"].split("&")} <= {"after", "wait"}
            continue
        body = json.loads(x["body"])
        assert raw_fields(body) == [], x["body"]
        assert _keys_of(body) <= OUTBOUND_KEYS, x["body"]
        # Not even the values of events: names, keys, dimensions, resources stay home.
        for secret in ("api_call", "completion", "evt-secret", "eu-west-9", "res-secret"):
            assert secret not in x["body"]
    # The embedded agent adds no listening socket to the data plane (only its API port), and
    # holds a connection it opened to the control plane (the long-poll).
    assert listening_ports(w.dp.pid) == {w.dp_port}
    assert any(remote == w.cp_port and state == "01" for _, remote, state in connections(w.dp.pid))
    # Every exchange was opened by the agent: the journal has only requests that arrived at
    # the control plane's port from an ephemeral port on the data plane's side.
    assert {x["peer"].rsplit(":", 1)[0] for x in exchanges} == {"127.0.0.1"}
    assert all(
        int(x["peer"].rsplit(":", 1)[1]) not in (world.cp_port, world.dp_port) for x in exchanges
    )


def test_standalone_agent_listens_only_on_its_health_port(world: World) -> None:
    w = world
    w.admin.push("governance.updated", {"apiKeys": [ROTATED_KEY]})  # as in the first test
    w.key = ROTATED_KEY
    wait_until(
        lambda: (
            w.api.get(  # the rotation is in force (if this test runs alone)
                "/api/v1/customers/acme/entitlements", headers={"X-API-KEY": w.key}
            ).status_code
            == 200
        ),
        10,
        "rotated key",
    )
    w.ingest("acme", 2)
    wait_until(lambda: w.admin.state()["totals"], 10, "a rollup published")
    wait_until(lambda: w.metric("meterplane_sync_outbox_pending") == 0, 10, "outbox drained")
    w.dp.stop()  # the standalone agent reads the same counters, from ClickHouse (chdb here)
    health = free_port()
    shared = w.tmp / "shared-volume" / "catalog.yaml"  # what the other services read
    env = {**w.dp_env, "METERPLANE_HTTP_PORT": str(health), "METERPLANE_CATALOG": str(shared)}
    agent = Proc(["sync"], env, w.tmp / "sync.log").start()
    try:
        wait_http(f"http://127.0.0.1:{health}/readyz", 60, agent)
        assert listening_ports(agent.pid) == {health}
        socks = connections(agent.pid)
        established = [s for s in socks if s[2] == "01"]
        assert established, "the agent holds its long-poll connection"
        for local, remote, _ in established:
            assert remote == w.cp_port or local == health, (local, remote)
        out = load_catalog(shared)
        assert {"acme", "hooli", "initech"} <= set(out.customers)
        governance = json.loads(shared.with_name("governance.json").read_text())
        assert governance == {"apiKeys": [ROTATED_KEY]}
        metrics = httpx.get(f"http://127.0.0.1:{health}/metrics").text
        assert "meterplane_sync_cursor_seq" in metrics
        # It reads the counters table (not an empty source): every total the control plane
        # has is among the counters it sees.
        published = len(w.admin.state()["totals"])
        assert published >= 1

        def seen() -> float:
            text = httpx.get(f"http://127.0.0.1:{health}/metrics").text
            line = next(
                ln for ln in text.splitlines() if ln.startswith("meterplane_sync_counters_seen")
            )
            return float(line.rsplit(" ", 1)[1])

        wait_until(lambda: seen() >= published, 10, "counters read from ClickHouse")
        # Counters read from the `counters` table agree with what was published: nothing new.
        counts = w.admin.state()["counts"]
        time.sleep(1.0)  # two rollup intervals (0.5 s) and reads
        accepted = counts.get("rollups_accepted", 0)
        assert w.admin.state()["counts"].get("rollups_accepted", 0) == accepted
        w.admin.push("subscription.changed", {"customerId": "hooli", "subscription": sub("pro")})

        def hooli_plan() -> str | None:
            s = load_catalog(shared).customers["hooli"].subscription
            return None if s is None else s.planId

        wait_until(lambda: hooli_plan() == "pro", POLL_S * 2, "catalog file updated")
    finally:
        agent.stop(timeout=20)
    assert agent.proc is not None
    assert agent.proc.returncode == 0, agent.stderr()[-2000:]
