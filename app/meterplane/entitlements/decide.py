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


class Decision(msgspec.Struct, omit_defaults=False, gc=False):
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


_FOREVER = 1 << 62  # later than any instant a catalog can name
_DENY, _BOOLEAN, _NUMERIC, _METERED = range(4)


class _Terms(msgspec.Struct, array_like=True, gc=False):
    """Everything a decision takes from the catalog for one (customer, feature), valid for
    ``valid_from <= now < valid_until``: within that interval no subscription date, credit
    grant window or usage period starts or ends, so only the counter and the request vary."""

    valid_from: int
    valid_until: int
    kind: int
    reason: DeniedReason | None = None
    limit: float | None = None
    limit_out: Number | None = None
    reset: str | None = None
    anchor: str | None = None
    start: int = 0
    start_iso: str | None = None
    end_iso: str | None = None


def _window(now: int, edges: list[int]) -> tuple[int, int]:
    """The interval around ``now`` that none of ``edges`` falls strictly inside."""
    before = [e for e in edges if e <= now]
    after = [e for e in edges if e > now]
    return max(before, default=-_FOREVER), min(after, default=_FOREVER)


def _terms(catalog: Catalog, customer_id: str, feature_id: str, now: int) -> _Terms:
    """The slow path: read the catalog for one (customer, feature) at ``now``."""
    customer = catalog.customers.get(customer_id)
    if customer is None:
        return _Terms(-_FOREVER, _FOREVER, _DENY, "CustomerNotFound")
    feature = catalog.features.get(feature_id)
    if feature is None:
        return _Terms(-_FOREVER, _FOREVER, _DENY, "FeatureNotFound")
    sub = customer.subscription
    if sub is None or sub.status not in _GRANTING:
        return _Terms(-_FOREVER, _FOREVER, _DENY, "NoActiveSubscription")
    edges = [to_us(sub.startDate)]
    if sub.endDate is not None:
        edges.append(to_us(sub.endDate))
    if edges[0] > now or (sub.endDate is not None and edges[1] <= now):
        return _Terms(*_window(now, edges), _DENY, "NoActiveSubscription")
    ent = catalog.resolved(customer_id, feature_id)
    if ent is None:
        return _Terms(*_window(now, edges), _DENY, "NoFeatureEntitlementInSubscription")
    anchor = iso(ent.anchor_us)
    if feature.type is FeatureType.BOOLEAN:
        return _Terms(*_window(now, edges), _BOOLEAN, anchor=anchor)
    limit = ent.usage_limit
    if limit is not None:
        for g in customer.credits:
            if g.featureId != feature_id:
                continue
            valid_from = to_us(g.validFrom)
            valid_until = None if g.validUntil is None else to_us(g.validUntil)
            edges.append(valid_from)
            if valid_until is not None:
                edges.append(valid_until)
            if valid_from <= now and (valid_until is None or now < valid_until):
                limit += g.amount
    if feature.type is FeatureType.NUMERIC:
        return _Terms(*_window(now, edges), _NUMERIC, None, limit, _num(limit), anchor=anchor)
    start, end = period_bounds(ent.reset_period, ent.anchor_us, now)
    edges.append(start)
    if end is not None:
        edges.append(end)
    return _Terms(
        *_window(now, edges),
        _METERED,
        None,
        limit,
        _num(limit),
        None if ent.reset_period is None else ent.reset_period.value,
        anchor,
        start,
        iso(start) if ent.reset_period is not None else None,
        iso(end),
    )


class Decider:
    """Answers checks from the current catalog and counters.

    What the catalog says about a (customer, feature) is read once into ``_Terms`` and
    reused until the catalog object changes or the clock leaves the interval those terms
    hold for; a check is then two dict lookups, one comparison and the answer's object.
    """

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
        # (catalog, its terms by (customer, feature)), replaced as one: terms are only ever
        # stored next to the catalog they were read from, whichever thread reads.
        self._cache: tuple[Catalog | None, dict[tuple[str, str], _Terms]] = (None, {})

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
        cached_for, cache = self._cache
        if cached_for is not catalog:
            cache = {}
            self._cache = (catalog, cache)
        t = cache.get((customer_id, feature_id))
        if t is None or not t.valid_from <= now < t.valid_until:
            t = _terms(catalog, customer_id, feature_id, now)
            if len(cache) >= 100_000:  # ids come from requests: bound the memory
                cache.clear()
            cache[customer_id, feature_id] = t
        fallback = self._fallback()
        kind = t.kind
        if kind == _DENY:
            reason = t.reason
            return Decision(customer_id, feature_id, False, reason, requested, isFallback=fallback)
        if kind == _BOOLEAN:
            return Decision(
                customer_id,
                feature_id,
                True,
                None,
                requested,
                hasUnlimitedUsage=True,
                usagePeriodAnchor=t.anchor,
                isFallback=fallback,
            )
        limit = t.limit
        if kind == _NUMERIC:
            granted = limit is None or requested <= limit
            return Decision(
                customer_id,
                feature_id,
                granted,
                None if granted else "RequestedUsageExceedingLimit",
                requested,
                None,
                t.limit_out,
                limit is None,
                usagePeriodAnchor=t.anchor,
                isFallback=fallback,
            )
        current = self._book.value(customer_id, feature_id, t.start, resource_id or "") or 0
        granted = limit is None or current + requested <= limit
        return Decision(
            customer_id,
            feature_id,
            granted,
            None if granted else "RequestedUsageExceedingLimit",
            requested,
            current,
            t.limit_out,
            limit is None,
            t.reset,
            t.anchor,
            t.start_iso,
            t.end_iso,
            t.end_iso,
            fallback,
        )

    def list(self, customer_id: str) -> list[Decision]:
        """A decision for every feature of the catalog (denials included, with reasons)."""
        catalog = self._catalog()
        return [self.check(customer_id, fid, 0) for fid in catalog.features]
