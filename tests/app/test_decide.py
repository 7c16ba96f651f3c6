"""Decisions: every denial reason, limits with add-ons and credits, fixed clock."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from meterplane.core.catalog import load_catalog, parse_catalog
from meterplane.core.counters import CounterBook, Outcome
from meterplane.core.timeutil import to_us
from meterplane.entitlements.decide import Decider

NOW = to_us(datetime(2026, 11, 21, 12, 0, tzinfo=UTC))


def _decider(data: dict[str, Any] | None = None) -> tuple[Decider, CounterBook]:
    catalog = load_catalog() if data is None else parse_catalog(data)
    book = CounterBook(catalog)
    return Decider(lambda: catalog, book, clock=lambda: NOW), book


def _count(book: CounterBook, customer: str, n: int, ts: int = NOW) -> None:
    out = Outcome()
    for i in range(n):
        book.apply_event(customer, "api_call", f"k{i}", ts, {"region": "eu"}, "", out)


@pytest.mark.parametrize(
    ("customer", "feature", "reason"),
    [
        ("nobody", "api-calls", "CustomerNotFound"),
        ("acme", "teleport", "FeatureNotFound"),
        ("hooli", "api-calls", "NoActiveSubscription"),  # cancelled
        ("acme", "audit-log", "NoFeatureEntitlementInSubscription"),
    ],
)
def test_denial_reasons(customer: str, feature: str, reason: str) -> None:
    decider, _ = _decider()
    d = decider.check(customer, feature)
    assert not d.isGranted
    assert d.accessDeniedReason == reason


def test_metered_limit_includes_addons_and_requested_usage() -> None:
    decider, book = _decider()
    _count(book, "acme", 14_999)
    d = decider.check("acme", "api-calls")
    assert (d.isGranted, d.currentUsage, d.usageLimit) == (True, 14_999, 15_000)
    assert d.usagePeriodStart == "2026-11-01T00:00:00Z"
    assert d.usagePeriodEnd == "2026-12-01T00:00:00Z"
    d = decider.check("acme", "api-calls", requested=2)
    assert not d.isGranted
    assert d.accessDeniedReason == "RequestedUsageExceedingLimit"


def test_usage_from_an_earlier_period_does_not_count() -> None:
    decider, book = _decider()
    _count(book, "acme", 20_000, ts=to_us(datetime(2026, 10, 20, tzinfo=UTC)))
    d = decider.check("acme", "api-calls")
    assert (d.isGranted, d.currentUsage) == (True, 0)


def test_boolean_numeric_and_unlimited() -> None:
    decider, book = _decider()
    assert decider.check("umbrella", "audit-log").isGranted  # from the audit add-on
    assert decider.check("acme", "projects", requested=10).isGranted
    assert not decider.check("acme", "projects", requested=11).isGranted
    _count(book, "globex", 1_000_000)
    d = decider.check("globex", "api-calls")
    assert d.isGranted
    assert d.hasUnlimitedUsage
    assert d.usageLimit is None


def test_subscription_not_started_yet_or_ended() -> None:
    base: dict[str, Any] = {
        "features": [{"id": "f", "type": "BOOLEAN"}],
        "plans": [{"id": "p", "entitlements": {"f": {}}}],
        "customers": [
            {"id": "future", "subscription": {"planId": "p", "startDate": "2027-01-01T00:00:00Z"}},
            {
                "id": "ended",
                "subscription": {
                    "planId": "p",
                    "startDate": "2026-01-01T00:00:00Z",
                    "endDate": "2026-11-01T00:00:00Z",
                },
            },
            {"id": "ok", "subscription": {"planId": "p", "startDate": "2026-01-01T00:00:00Z"}},
        ],
    }
    decider, _ = _decider(base)
    assert decider.check("future", "f").accessDeniedReason == "NoActiveSubscription"
    assert decider.check("ended", "f").accessDeniedReason == "NoActiveSubscription"
    assert decider.check("ok", "f").isGranted


def test_credit_grant_adds_to_the_limit_while_valid() -> None:
    data: dict[str, Any] = {
        "features": [{"id": "calls", "type": "METERED", "meter": {"eventName": "api_call"}}],
        "plans": [
            {"id": "p", "entitlements": {"calls": {"usageLimit": 10, "resetPeriod": "MONTH"}}}
        ],
        "customers": [
            {
                "id": "c",
                "subscription": {"planId": "p", "startDate": "2026-11-01T00:00:00Z"},
                "credits": [
                    {
                        "featureId": "calls",
                        "amount": 5,
                        "validFrom": "2026-11-10T00:00:00Z",
                        "validUntil": "2026-12-01T00:00:00Z",
                    },
                    {
                        "featureId": "calls",
                        "amount": 100,
                        "validFrom": "2026-10-01T00:00:00Z",
                        "validUntil": "2026-11-01T00:00:00Z",
                    },
                ],
            }
        ],
    }
    decider, book = _decider(data)
    _count(book, "c", 14)
    d = decider.check("c", "calls")
    assert (d.isGranted, d.usageLimit) == (True, 15)
    assert not decider.check("c", "calls", requested=2).isGranted


def test_list_gives_every_feature() -> None:
    decider, _ = _decider()
    listed = decider.list("acme")
    assert {d.featureId for d in listed} == set(load_catalog().features)
