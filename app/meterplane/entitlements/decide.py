"""Entitlement decisions (DESIGN.md 3.2 and section 4), from memory only.

The catalog and the counters are in-process objects kept current by the aggregator (or,
in production, by the counter stream); a check is a few dict lookups and one period
computation, with no storage round trip. An unknown customer or feature is a denial
reason, never an error.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import msgspec

from meterplane.core.catalog import Catalog, FeatureType, SubscriptionStatus
from meterplane.core.counters import CounterBook, Number
from meterplane.core.periods import period_bounds
from meterplane.core.timeutil import iso, now_us, to_us

DeniedReason = Literal[
    "CustomerNotFound",
    "FeatureNotFound",
    "NoActiveSubscription",
    "NoFeatureEntitlementInSubscription",
    "RequestedUsageExceedingLimit",
    "Unknown",
]
_GRANTING = (SubscriptionStatus.ACTIVE, SubscriptionStatus.TRIALING)


class Decision(msgspec.Struct, omit_defaults=False):
    """One entitlement decision, in the vendor's public REST v1 shape."""

    customerId: str  # noqa: N815 - wire names are the public API's
    featureId: str  # noqa: N815
    isGranted: bool  # noqa: N815
    accessDeniedReason: DeniedReason | None = None  # noqa: N815
    requestedUsage: Number | None = None  # noqa: N815
    currentUsage: Number | None = None  # noqa: N815
    usageLimit: Number | None = None  # noqa: N815
    hasUnlimitedUsage: bool = False  # noqa: N815
    resetPeriod: str | None = None  # noqa: N815
    usagePeriodAnchor: str | None = None  # noqa: N815
    usagePeriodStart: str | None = None  # noqa: N815
    usagePeriodEnd: str | None = None  # noqa: N815
    validUntil: str | None = None  # noqa: N815
    isFallback: bool = False  # noqa: N815


class EntitlementList(msgspec.Struct):
    """Body of ``GET /api/v1/customers/{id}/entitlements``."""

    entitlements: list[Decision]


def _num(v: float | None) -> Number | None:
    """Limits are parsed as floats; show whole numbers as integers."""
    if v is None:
        return None
    return int(v) if float(v).is_integer() else v


class Decider:
    """Answers checks from the current catalog and counters."""

    def __init__(
        self,
        catalog: Callable[[], Catalog],
        book: CounterBook,
        clock: Callable[[], int] = now_us,
        fallback: Callable[[], bool] = lambda: False,
    ) -> None:
        self._catalog = catalog
        self._book = book
        self._clock = clock
        self._fallback = fallback

    def check(
        self,
        customer_id: str,
        feature_id: str,
        requested: Number = 1,
        resource_id: str | None = None,
    ) -> Decision:
        """One decision; ``requested`` defaults to 1 as in DESIGN.md section 4."""
        catalog = self._catalog()
        now = self._clock()
        fallback = self._fallback()

        def deny(reason: DeniedReason) -> Decision:
            return Decision(customer_id, feature_id, False, reason, requested, isFallback=fallback)

        customer = catalog.customers.get(customer_id)
        if customer is None:
            return deny("CustomerNotFound")
        feature = catalog.features.get(feature_id)
        if feature is None:
            return deny("FeatureNotFound")
        sub = customer.subscription
        if (
            sub is None
            or sub.status not in _GRANTING
            or to_us(sub.startDate) > now
            or (sub.endDate is not None and to_us(sub.endDate) <= now)
        ):
            return deny("NoActiveSubscription")
        ent = catalog.resolved(customer_id, feature_id)
        if ent is None:
            return deny("NoFeatureEntitlementInSubscription")
        anchor = iso(ent.anchor_us)
        if feature.type is FeatureType.BOOLEAN:
            return Decision(
                customer_id,
                feature_id,
                True,
                None,
                requested,
                hasUnlimitedUsage=True,
                usagePeriodAnchor=anchor,
                isFallback=fallback,
            )
        limit = ent.usage_limit
        if limit is not None:
            for g in customer.credits:
                if (
                    g.featureId == feature_id
                    and to_us(g.validFrom) <= now
                    and (g.validUntil is None or now < to_us(g.validUntil))
                ):
                    limit += g.amount
        if feature.type is FeatureType.NUMERIC:
            granted = limit is None or requested <= limit
            return Decision(
                customer_id,
                feature_id,
                granted,
                None if granted else "RequestedUsageExceedingLimit",
                requested,
                None,
                _num(limit),
                limit is None,
                usagePeriodAnchor=anchor,
                isFallback=fallback,
            )
        start, end = period_bounds(ent.reset_period, ent.anchor_us, now)
        current = self._book.value(customer_id, feature_id, start, resource_id or "") or 0
        granted = limit is None or current + requested <= limit
        return Decision(
            customer_id,
            feature_id,
            granted,
            None if granted else "RequestedUsageExceedingLimit",
            requested,
            current,
            _num(limit),
            limit is None,
            None if ent.reset_period is None else ent.reset_period.value,
            anchor,
            iso(start) if ent.reset_period is not None else None,
            iso(end),
            iso(end),
            fallback,
        )

    def list(self, customer_id: str) -> list[Decision]:
        """A decision for every feature of the catalog (denials included, with reasons)."""
        catalog = self._catalog()
        return [self.check(customer_id, fid, 0) for fid in catalog.features]
