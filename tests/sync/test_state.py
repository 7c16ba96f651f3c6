"""Change records applied to the synced state: every type, idempotence, rejection."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from meterplane.core.counters import CounterBook
from meterplane.core.timeutil import to_us
from meterplane.entitlements.decide import Decider
from meterplane.sync.protocol import ChangeRecord
from meterplane.sync.state import ChangeRejected, SyncedState, apply_change, to_catalog
from tests.sync.harness import CATALOG, sub

NOW = to_us(datetime(2026, 11, 20, 12, tzinfo=UTC))


def rec(seq: int, kind: str, data: dict[str, Any]) -> ChangeRecord:
    return ChangeRecord(seq=seq, id=f"c{seq}", type=kind, at="2026-11-20T00:00:00Z", data=data)  # type: ignore[arg-type]


def feed() -> list[ChangeRecord]:
    return [
        rec(1, "catalog.updated", CATALOG),
        rec(2, "subscription.created", {"customerId": "acme", "subscription": sub("starter")}),
        rec(3, "subscription.created", {"customerId": "globex", "subscription": sub("pro")}),
        rec(4, "subscription.changed", {"customerId": "acme", "subscription": sub("pro")}),
        rec(
            5,
            "credit.granted",
            {
                "grantId": "g1",
                "customerId": "acme",
                "featureId": "api-calls",
                "amount": 50,
                "validFrom": "2026-11-01T00:00:00Z",
                "validUntil": "2026-12-01T00:00:00Z",
            },
        ),
        rec(6, "subscription.cancelled", {"customerId": "globex"}),
        rec(7, "governance.updated", {"apiKeys": ["k" * 20], "rollupIntervalSeconds": 30}),
    ]


def decide(state: SyncedState, customer: str, feature: str) -> Any:
    catalog = to_catalog(state)
    return Decider(lambda: catalog, CounterBook(catalog), clock=lambda: NOW).check(
        customer, feature, 1
    )


def run_feed(records: list[ChangeRecord]) -> SyncedState:
    state = SyncedState()
    for r in records:
        state = apply_change(state, r)
    return state


def test_feed_sets_plan_subscription_cancellation_credit_and_governance() -> None:
    state = run_feed(feed())
    assert state.seq == 7
    acme = decide(state, "acme", "api-calls")
    assert acme.isGranted
    assert acme.usageLimit == 150
    assert decide(state, "globex", "api-calls").accessDeniedReason == "NoActiveSubscription"
    assert state.apiKeys == ["k" * 20]
    assert state.rollupIntervalSeconds == 30


def test_every_record_applied_twice_changes_nothing() -> None:
    state = SyncedState()
    for r in feed():
        once = apply_change(state, r)
        twice = apply_change(once, r)
        assert twice.encode() == once.encode(), r.type
        state = once
    # The credit grant in particular must not add its amount a second time.
    assert decide(state, "acme", "api-calls").usageLimit == 150


def test_revoke_removes_the_grant_and_apply_does_not_touch_its_input() -> None:
    state = run_feed(feed())
    before = state.encode()
    after = apply_change(state, rec(8, "credit.revoked", {"grantId": "g1", "customerId": "acme"}))
    assert state.encode() == before
    assert decide(after, "acme", "api-calls").usageLimit == 100


@pytest.mark.parametrize(
    ("kind", "data", "reason"),
    [
        ("subscription.created", {"customerId": "x", "subscription": sub("gold")}, "unknown plan"),
        (
            "subscription.created",
            {"customerId": "x", "subscription": {"planId": "pro"}},
            "startDate",
        ),
        (
            "subscription.created",
            {"customerId": "x", "subscription": sub("pro", start="2026-01-01T00:00:00")},
            "offset",
        ),
        (
            "credit.granted",
            {
                "grantId": "g",
                "customerId": "acme",
                "featureId": "nope",
                "amount": 1,
                "validFrom": "2026-01-01T00:00:00Z",
            },
            "unknown",
        ),
        ("governance.updated", {"apiKeys": ["short"]}, "apiKeys"),
        ("catalog.updated", {"features": [], "plans": [], "colour": "red"}, "colour"),
    ],
)
def test_invalid_records_are_rejected_whole(kind: str, data: dict[str, Any], reason: str) -> None:
    state = run_feed(feed()[:3])
    with pytest.raises(ChangeRejected, match=reason):
        apply_change(state, rec(9, kind, data))


def test_catalog_change_that_orphans_a_subscription_is_rejected() -> None:
    state = run_feed(feed()[:3])
    shrunk = {**CATALOG, "plans": [p for p in CATALOG["plans"] if p["id"] != "starter"]}
    with pytest.raises(ChangeRejected, match="starter"):
        apply_change(state, rec(4, "catalog.updated", shrunk))
