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


def test_terms_are_reread_when_the_clock_crosses_a_boundary() -> None:
    """One decider, a clock that moves: every boundary the cached terms depend on is seen."""
    data: dict[str, Any] = {
        "features": [{"id": "calls", "type": "METERED", "meter": {"eventName": "api_call"}}],
        "plans": [{"id": "p", "entitlements": {"calls": {"usageLimit": 10, "resetPeriod": "DAY"}}}],
        "customers": [
            {
                "id": "c",
                "subscription": {
                    "planId": "p",
                    "startDate": "2026-11-20T00:00:00Z",
                    "endDate": "2026-11-23T00:00:00Z",
                },
                "credits": [
                    {
                        "featureId": "calls",
                        "amount": 5,
                        "validFrom": "2026-11-21T06:00:00Z",
                        "validUntil": "2026-11-21T18:00:00Z",
                    }
                ],
            }
        ],
    }
    catalog = parse_catalog(data)
    book = CounterBook(catalog)
    clock = [to_us(datetime(2026, 11, 19, 23, 0, tzinfo=UTC))]
    decider = Decider(lambda: catalog, book, clock=lambda: clock[0])

    def at(hour: int, day: int = 21) -> Any:
        clock[0] = to_us(datetime(2026, 11, day, hour, 0, tzinfo=UTC))
        return decider.check("c", "calls")

    assert decider.check("c", "calls").accessDeniedReason == "NoActiveSubscription"
    _count(book, "c", 12, ts=to_us(datetime(2026, 11, 21, 1, 0, tzinfo=UTC)))
    d = at(1, day=20)
    assert (d.isGranted, d.currentUsage, d.usagePeriodStart) == (True, 0, "2026-11-20T00:00:00Z")
    d = at(5)  # the day's counter, before the credit
    assert (d.isGranted, d.currentUsage, d.usageLimit) == (False, 12, 10)
    d = at(6)  # the credit starts
    assert (d.isGranted, d.usageLimit) == (True, 15)
    d = at(18)  # and ends
    assert (d.isGranted, d.usageLimit) == (False, 10)
    d = at(0, day=22)  # a new day, a new period
    assert (d.isGranted, d.currentUsage, d.usagePeriodStart) == (True, 0, "2026-11-22T00:00:00Z")
    assert at(0, day=23).accessDeniedReason == "NoActiveSubscription"  # the subscription ended


def test_a_new_catalog_replaces_the_cached_terms() -> None:
    catalog = load_catalog()
    holder = [catalog]
    decider = Decider(lambda: holder[0], CounterBook(catalog), clock=lambda: NOW)
    assert decider.check("acme", "audit-log").accessDeniedReason == (
        "NoFeatureEntitlementInSubscription"
    )
    doc = catalog.doc.model_dump(mode="json")
    acme = next(c for c in doc["customers"] if c["id"] == "acme")
    acme["subscription"]["addons"].append("audit")
    holder[0] = parse_catalog(doc)
    assert decider.check("acme", "audit-log").isGranted
