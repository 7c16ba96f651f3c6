"""The agent in-process against the reference control plane on a loopback port: rollups on
the interval and at period close, limit crossings, a durable outbox, crash-safe cursor."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from meterplane.core.catalog import Catalog, parse_catalog
from meterplane.core.counters import CounterBook, Outcome
from meterplane.core.timeutil import US_PER_S, iso, now_us
from meterplane.entitlements.decide import Decider
from meterplane.plane import CatalogHolder
from meterplane.sync import metrics
from meterplane.sync.adapters import BookSource, CounterSource, EmbeddedTarget, SqlSource
from meterplane.sync.agent import AgentConfig, SyncAgent
from meterplane.sync.client import ControlPlaneClient
from meterplane.sync.store import AgentStore
from tests.sync.harness import (
    CATALOG,
    ENV,
    TOKEN,
    Admin,
    ThreadControlPlane,
    free_port,
    sub,
    wait_until,
)


class Rig:
    """A counter book, a catalog holder and an agent feeding the reference control plane."""

    def __init__(
        self,
        tmp: Path,
        url: str,
        catalog: Catalog | None = None,
        source: CounterSource | None = None,
        **cfg: Any,
    ) -> None:
        self.book = CounterBook(catalog or parse_catalog({}))
        self.holder = CatalogHolder(self.book.catalog)
        self.holder.subscribe(self.book.set_catalog)
        self.source = BookSource(self.book)
        self.counters: CounterSource = source or self.source
        self.store_path = tmp / "agent.sqlite"
        self.url = url
        self.cfg = {
            "poll_wait_s": 1.0,
            "rollup_interval_s": 0.3,
            "backoff_base_s": 0.05,
            "backoff_max_s": 0.3,
            "tick_s": 0.05,
            "read_every_s": 0.05,
            **cfg,
        }
        self.agent = self._new_agent()
        self.n = 0

    def _new_agent(self) -> SyncAgent:
        config = AgentConfig(url=self.url, environment=ENV, token=TOKEN, **self.cfg)
        return SyncAgent(
            config, self.store_path, self.counters, EmbeddedTarget(self.holder), self.holder.get()
        )

    def restart(self) -> None:
        self.agent.stop()
        self.agent = self._new_agent()
        self.agent.start()

    def count(self, customer: str, n: int, event: str = "api_call", ts: int | None = None) -> None:
        ts = now_us() if ts is None else ts
        for _ in range(n):
            self.n += 1
            self.book.apply_event(customer, event, f"k{self.n}", ts, {}, "", Outcome())
        self.source.mark_changed()

    def decide(self, customer: str, feature: str = "api-calls") -> Any:
        return Decider(self.holder.get, self.book).check(customer, feature, 0)


@pytest.fixture
def cp(tmp_path: Path) -> Iterator[ThreadControlPlane]:
    plane = ThreadControlPlane(tmp_path / "cp").start()
    yield plane
    plane.stop()


@pytest.fixture
def admin(cp: ThreadControlPlane) -> Iterator[Admin]:
    a = Admin(cp.url)
    yield a
    a.close()


def _synced(rig: Rig, customer: str) -> None:
    wait_until(lambda: customer in rig.holder.get().customers, 10, f"{customer} synced")


def test_rollups_follow_the_interval_with_growing_revisions_and_exact_totals(
    tmp_path: Path, cp: ThreadControlPlane, admin: Admin
) -> None:
    admin.push("catalog.updated", CATALOG)
    admin.push("subscription.created", {"customerId": "acme", "subscription": sub("pro")})
    rig = Rig(tmp_path, cp.url)
    rig.agent.start()
    try:
        _synced(rig, "acme")
        rig.count("acme", 3)
        start = rig.decide("acme").usagePeriodStart
        wait_until(lambda: admin.totals().get(("acme", "api-calls", start)) == 3, 10, "3")
        rig.count("acme", 2)
        wait_until(lambda: admin.totals().get(("acme", "api-calls", start)) == 5, 10, "5")
        totals = {t["featureId"]: t for t in admin.state()["totals"]}
        assert totals["api-calls"]["revision"] == 2
        accepted = admin.state()["counts"]["rollups_accepted"]
        wait_until(lambda: rig.agent.store.outbox_stats()[0] == 0, 5, "outbox empty")
        # Nothing changed: later intervals publish nothing new.
        rig.agent._stop.wait(1.0)
        assert admin.state()["counts"]["rollups_accepted"] == accepted
        assert admin.state()["counts"]["rollups_duplicate"] == 0
        # Governance sets the interval: an hour from now on, so a change waits for it.
        admin.push("governance.updated", {"rollupIntervalSeconds": 3600})
        wait_until(lambda: rig.agent.rollup_interval_s == 3600, 10, "interval in force")
        rig.count("acme", 1)
        rig.agent._stop.wait(1.0)
        assert admin.totals()[("acme", "api-calls", start)] == 5
    finally:
        rig.agent.stop()


def test_period_close_publishes_the_closing_value_at_once(
    tmp_path: Path, cp: ThreadControlPlane, admin: Admin
) -> None:
    catalog = copy.deepcopy(CATALOG)
    catalog["plans"].append(
        {"id": "hourly", "entitlements": {"api-calls": {"usageLimit": 99, "resetPeriod": "HOUR"}}}
    )
    end = now_us() + 3 * US_PER_S
    admin.push("catalog.updated", catalog)
    admin.push(
        "subscription.created",
        {"customerId": "acme", "subscription": sub("hourly", start=iso(end - 3600 * US_PER_S))},
    )
    rig = Rig(tmp_path, cp.url, rollup_interval_s=120.0)  # only the close can publish
    rig.agent.start()
    try:
        _synced(rig, "acme")
        rig.count("acme", 4, ts=end - US_PER_S)  # inside the period, however slow the sync was
        period_start = iso(end - 3600 * US_PER_S)
        key = ("acme", "api-calls", period_start)
        wait_until(lambda: key in admin.totals(), 8, "closing rollup")
        got = next(t for t in admin.state()["totals"] if t["periodStart"] == period_start)
        assert got["closed"] is True
        assert got["value"] == 4
        assert got["asOf"] >= iso(end)
        assert got["periodEnd"] == iso(end)
    finally:
        rig.agent.stop()


def test_limit_crossed_once_per_crossing_per_period(
    tmp_path: Path, cp: ThreadControlPlane, admin: Admin
) -> None:
    admin.push("catalog.updated", CATALOG)
    admin.push("subscription.created", {"customerId": "acme", "subscription": sub("starter")})
    rig = Rig(tmp_path, cp.url)
    rig.agent.start()
    try:
        _synced(rig, "acme")
        rig.count("acme", 4)
        rig.agent._stop.wait(0.5)
        assert admin.state()["lifecycleEvents"] == []
        rig.count("acme", 1)  # 5 of 5: the limit is reached
        wait_until(lambda: admin.state()["lifecycleEvents"], 10, "first crossing")
        rig.count("acme", 3)  # still over: no new crossing
        rig.restart()  # and a restart does not forget that it was already sent
        rig.agent._stop.wait(0.8)
        events = admin.state()["lifecycleEvents"]
        assert [e["crossing"] for e in events] == [1]
        assert events[0]["limit"] == 5
        assert events[0]["type"] == "usage.limit_crossed"
        # A credit grant lifts the limit to 5 + 10: usage (8) is below it again ...
        admin.push(
            "credit.granted",
            {
                "grantId": "g1",
                "customerId": "acme",
                "featureId": "api-calls",
                "amount": 10,
                "validFrom": "2026-01-01T00:00:00Z",
            },
        )
        wait_until(lambda: rig.decide("acme").usageLimit == 15, 10, "grant in force")
        rig.count("acme", 7)  # ... and crosses it again at 15
        wait_until(lambda: len(admin.state()["lifecycleEvents"]) == 2, 10, "second crossing")
        second = admin.state()["lifecycleEvents"][1]
        assert second["crossing"] == 2
        assert second["limit"] == 15
        assert second["usage"] == 15
        assert admin.state()["counts"]["events_duplicate"] == 0
    finally:
        rig.agent.stop()


def test_outbox_survives_an_agent_restart_while_the_control_plane_is_down(tmp_path: Path) -> None:
    catalog = parse_catalog({**CATALOG, "customers": [{"id": "acme", "subscription": sub("pro")}]})
    port = free_port()
    rig = Rig(tmp_path, f"http://127.0.0.1:{port}", catalog)
    failures_before = metrics.FAILURES.labels("rollup")._value.get()
    rig.agent.start()
    rig.count("acme", 7)
    rig.count("acme", 2, event="nothing")
    wait_until(lambda: rig.agent.store.outbox_stats()[0] >= 1, 10, "outbox grows")
    wait_until(
        lambda: metrics.FAILURES.labels("rollup")._value.get() > failures_before, 10, "failures"
    )
    rig.agent.stop()
    pending = AgentStore(rig.store_path)
    assert pending.outbox_stats()[0] >= 1  # on disk, not in memory
    pending.close()
    cp = ThreadControlPlane(tmp_path / "cp", port=port).start()
    admin = Admin(cp.url)
    try:
        rig.agent = rig._new_agent()
        rig.agent.start()
        start = rig.decide("acme").usagePeriodStart
        wait_until(lambda: admin.totals().get(("acme", "api-calls", start)) == 7, 10, "drained")
        wait_until(lambda: rig.agent.store.outbox_stats() == (0, None), 10, "outbox empty")
    finally:
        rig.agent.stop()
        admin.close()
        cp.stop()


def test_a_crash_between_effect_and_cursor_replays_the_page_without_double_effects(
    tmp_path: Path, cp: ThreadControlPlane, admin: Admin
) -> None:
    admin.push("catalog.updated", CATALOG)
    admin.push("subscription.created", {"customerId": "acme", "subscription": sub("pro")})
    admin.push(
        "credit.granted",
        {
            "grantId": "g1",
            "customerId": "acme",
            "featureId": "api-calls",
            "amount": 50,
            "validFrom": "2026-01-01T00:00:00Z",
        },
    )
    rig = Rig(tmp_path, cp.url)
    client = ControlPlaneClient(cp.url, ENV, TOKEN)
    page = client.changes(None, 0)
    client.close()

    def crash(*_: object) -> None:
        raise RuntimeError("power cut before the cursor was written")

    rig.agent.store.commit_changes = crash  # type: ignore[method-assign]
    with pytest.raises(RuntimeError, match="power cut"):
        rig.agent.apply_page(page)
    assert rig.decide("acme").usageLimit == 150  # the effect was in force ...
    rig.agent.store.close()
    fresh = AgentStore(rig.store_path)
    assert fresh.load()[0] is None
    assert fresh.journal() == []
    fresh.close()

    rig.agent = rig._new_agent()
    rig.agent.start()
    try:
        wait_until(lambda: rig.agent.cursor == "3", 10, "replayed")
        admin.push("subscription.changed", {"customerId": "acme", "subscription": sub("starter")})
        wait_until(lambda: rig.agent.cursor == "4", 10, "next change")
        assert rig.decide("acme").usageLimit == 55  # starter 5 + the grant once
        journal = rig.agent.store.journal()
        assert [j[0] for j in journal] == [1, 2, 3, 4]
        assert {j[3] for j in journal} == {"applied"}
    finally:
        rig.agent.stop()


class FlakyClickHouse:
    """The read side of a ClickHouse server that is down until told otherwise."""

    def __init__(self) -> None:
        self.down = True
        self.calls = 0
        self.rows: dict[str, list[Any]] = {}

    def query_arrow(self, sql: str) -> pa.Table:
        self.calls += 1
        if self.down:
            raise ConnectionError("clickhouse unreachable")
        assert "FROM counters FINAL" in sql
        return pa.table(self.rows)


def test_counter_reads_back_off_while_clickhouse_is_down_then_publish(
    tmp_path: Path, cp: ThreadControlPlane, admin: Admin
) -> None:
    ch = FlakyClickHouse()
    rig = Rig(tmp_path, cp.url, source=SqlSource(ch), backoff_max_s=0.4)
    failures = metrics.FAILURES.labels("counters")._value.get()
    rig.agent.start()
    try:
        rig.agent._stop.wait(1.2)
        tried = ch.calls
        # Ticks come every 0.05 s; with backoff the reads are far fewer (0.05, 0.1, 0.2, ...).
        assert 2 <= tried <= 10
        assert metrics.FAILURES.labels("counters")._value.get() - failures == tried
        ch.rows = {
            "customer_id": ["acme"],
            "feature_id": ["api-calls"],
            "ps": [1_700_000_000_000_000],
            "pe": [-1],
            "v": [42.0],
        }
        ch.down = False
        wait_until(
            lambda: admin.totals().get(("acme", "api-calls", iso(1_700_000_000_000_000))) == 42,
            10,
            "published",
        )
    finally:
        rig.agent.stop()
