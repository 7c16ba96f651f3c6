"""Wire types of the control-plane protocol (``docs/control-plane-openapi.yaml``).

Shared by the agent and the reference control plane, so both sides decode with the same
types and the OpenAPI document is generated from them. Instants travel as RFC 3339 text in
UTC (``...Z``); internally they are int microseconds (``meterplane.core.timeutil``).

Paths (all relative to the control plane's base URL, all requested by the agent):
- ``GET  /v1/environments/{env}/changes?after=CURSOR&wait=SECONDS`` — long-poll;
- ``POST /v1/environments/{env}/rollups`` — ``RollupBatch``;
- ``POST /v1/environments/{env}/lifecycle-events`` — ``LifecycleBatch``.
Every request carries ``Authorization: Bearer <environment credential>``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import Annotated, Any, Literal, get_args

import msgspec

from meterplane.core.errors import MeterplaneError

API_PREFIX = "/v1/environments"
MAX_BATCH = 500
MAX_WAIT_S = 60.0

ChangeType = Literal[
    "catalog.updated",
    "subscription.created",
    "subscription.changed",
    "subscription.cancelled",
    "credit.granted",
    "credit.revoked",
    "governance.updated",
]
CHANGE_TYPES: tuple[str, ...] = get_args(ChangeType)
LifecycleType = Literal["usage.limit_crossed"]
Id = Annotated[str, msgspec.Meta(min_length=1, max_length=255)]


# ------------------------------------------------------------------ inbound: change records


class CatalogData(msgspec.Struct, forbid_unknown_fields=True):
    """``catalog.updated``: the whole product catalog (features, plans, add-ons) replaces the
    previous one. Items have the shapes of the catalog file (DESIGN.md 3.3)."""

    features: list[dict[str, Any]] = []
    plans: list[dict[str, Any]] = []
    addons: list[dict[str, Any]] = []
    version: str | None = None


class SubscriptionData(msgspec.Struct, forbid_unknown_fields=True):
    """A customer's subscription as the catalog file spells it."""

    planId: Id  # noqa: N815 - wire names follow the catalog file
    startDate: str  # noqa: N815
    addons: list[str] = []
    endDate: str | None = None  # noqa: N815
    status: Literal["ACTIVE", "TRIALING", "PAST_DUE", "CANCELLED"] = "ACTIVE"


class SubscriptionUpsert(msgspec.Struct, forbid_unknown_fields=True):
    """``subscription.created`` / ``subscription.changed``: the customer's subscription is
    now exactly this (a change replaces the whole subscription, so re-applying is a no-op)."""

    customerId: Id  # noqa: N815
    subscription: SubscriptionData


class SubscriptionCancel(msgspec.Struct, forbid_unknown_fields=True):
    """``subscription.cancelled``: status becomes CANCELLED (from ``cancelledAt`` if given)."""

    customerId: Id  # noqa: N815
    cancelledAt: str | None = None  # noqa: N815


class CreditGrantData(msgspec.Struct, forbid_unknown_fields=True):
    """``credit.granted``: ``amount`` adds to the feature's limit while valid. Keyed by
    ``grantId``: a grant sent again replaces itself, it never adds twice."""

    grantId: Id  # noqa: N815
    customerId: Id  # noqa: N815
    featureId: Id  # noqa: N815
    amount: Annotated[float, msgspec.Meta(gt=0)]
    validFrom: str  # noqa: N815
    validUntil: str | None = None  # noqa: N815


class CreditRevoke(msgspec.Struct, forbid_unknown_fields=True):
    """``credit.revoked``: the grant no longer applies."""

    grantId: Id  # noqa: N815
    customerId: Id  # noqa: N815


class GovernanceData(msgspec.Struct, forbid_unknown_fields=True):
    """``governance.updated``: settings the vendor governs. A field left out keeps its value;
    ``apiKeys`` replaces the set of ingest API keys (rotation and revocation)."""

    apiKeys: list[Annotated[str, msgspec.Meta(min_length=16, max_length=512)]] | None = None  # noqa: N815
    rollupIntervalSeconds: Annotated[float, msgspec.Meta(gt=0, le=86_400)] | None = None  # noqa: N815


CHANGE_DATA: dict[str, type[msgspec.Struct]] = {
    "catalog.updated": CatalogData,
    "subscription.created": SubscriptionUpsert,
    "subscription.changed": SubscriptionUpsert,
    "subscription.cancelled": SubscriptionCancel,
    "credit.granted": CreditGrantData,
    "credit.revoked": CreditRevoke,
    "governance.updated": GovernanceData,
}


class ChangeRecord(msgspec.Struct, forbid_unknown_fields=True):
    """One ordered change. ``seq`` increases strictly within an environment; ``id`` is
    unique; ``data`` has the shape named by ``type`` (see ``CHANGE_DATA``)."""

    seq: int
    id: Id
    type: ChangeType
    at: str
    data: dict[str, Any]


class ChangePage(msgspec.Struct, forbid_unknown_fields=True):
    """Answer to a long-poll: the changes after the cursor (possibly none after ``wait``),
    and the cursor to send next time."""

    changes: list[ChangeRecord]
    cursor: str


# ------------------------------------------------------------------ outbound: aggregates


class Rollup(msgspec.Struct, forbid_unknown_fields=True):
    """A customer's total for one feature and usage period, as of ``asOf``.

    ``revision`` grows each time the agent publishes a new value for the same period; the
    control plane keeps the value of the highest revision, so totals are exact whatever
    order batches arrive in. ``rollupId`` is derived from (environment, customer, feature,
    period start, revision): a resend carries the same id and is recognized.
    ``closed`` says the period had ended when this value was taken.
    """

    rollupId: Id  # noqa: N815
    customerId: Id  # noqa: N815
    featureId: Id  # noqa: N815
    periodStart: str  # noqa: N815
    periodEnd: str | None  # noqa: N815
    value: float | int
    asOf: str  # noqa: N815
    revision: Annotated[int, msgspec.Meta(ge=1)]
    closed: bool = False


class RollupBatch(msgspec.Struct, forbid_unknown_fields=True):
    """Body of ``POST .../rollups``: 1 to 500 rollups."""

    rollups: list[Rollup]


class LifecycleEvent(msgspec.Struct, forbid_unknown_fields=True):
    """A subscription lifecycle event. ``usage.limit_crossed``: the customer's usage of a
    METERED feature reached its limit (plan + add-ons + valid credits) in the period; sent
    once per crossing (``crossing`` counts them within the period)."""

    eventId: Id  # noqa: N815
    type: LifecycleType
    customerId: Id  # noqa: N815
    featureId: Id  # noqa: N815
    periodStart: str  # noqa: N815
    periodEnd: str | None  # noqa: N815
    usage: float | int
    limit: float | int
    crossing: Annotated[int, msgspec.Meta(ge=1)]
    detectedAt: str  # noqa: N815


class LifecycleBatch(msgspec.Struct, forbid_unknown_fields=True):
    """Body of ``POST .../lifecycle-events``: 1 to 500 events."""

    events: list[LifecycleEvent]


class BatchResult(msgspec.Struct):
    """What the control plane did with a batch: new items stored, resends recognized by id,
    and items older than what it already had (lower revision) ignored."""

    accepted: int
    duplicates: int
    stale: int = 0


class ProblemInfo(msgspec.Struct):
    """Error object of the control plane."""

    code: str
    message: str


class Problem(msgspec.Struct):
    """Every non-2xx body of the control plane."""

    error: ProblemInfo


# ------------------------------------------------------------------ ids


def rollup_id(environment: str, customer: str, feature: str, period_start_us: int, rev: int) -> str:
    """Deterministic id of one rollup revision (a resend after a crash has the same id)."""
    return _digest("rollup", environment, customer, feature, str(period_start_us), str(rev))


def lifecycle_id(
    environment: str, kind: str, customer: str, feature: str, period_start_us: int, n: int
) -> str:
    """Deterministic id of one lifecycle event (the n-th crossing in a period)."""
    return _digest("lifecycle", environment, kind, customer, feature, str(period_start_us), str(n))


def _digest(*parts: str) -> str:
    # NUL cannot occur in ids, so the joined text identifies the parts unambiguously.
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:32]


# ------------------------------------------------------------------ the aggregates-only guard

# Fields of an individual event or usage report (DESIGN.md 3.2), in the spellings they
# have on the wire, in storage and in Python. None of them may appear, at any depth, in
# anything the agent sends: a rollup is (customer, feature, period, value), never an event.
RAW_EVENT_FIELDS = frozenset(
    {
        "eventName",
        "event_name",
        "dimensions",
        "idempotencyKey",
        "idempotency_key",
        "resourceId",
        "resource_id",
        "timestamp",
        "ingestedAt",
        "ingested_at",
        "updateBehavior",
        "payload",
        "log_pos",
    }
)


class RawFieldLeak(MeterplaneError):
    """A payload about to leave the data plane carries a field of an individual event."""


def _keys(obj: Any, path: str = "$") -> Iterator[tuple[str, str]]:
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield str(k), f"{path}.{k}"
            yield from _keys(v, f"{path}.{k}")
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _keys(v, f"{path}[{i}]")


def raw_fields(obj: Any) -> list[str]:
    """Paths of every raw-event field in a decoded JSON value (empty: aggregates only)."""
    return [path for key, path in _keys(obj) if key in RAW_EVENT_FIELDS]


def check_aggregates_only(body: bytes) -> None:
    """Refuse (``RawFieldLeak``) an encoded payload that names any raw-event field."""
    found = raw_fields(msgspec.json.decode(body))
    if found:
        raise RawFieldLeak("refusing to send raw-event field(s): " + ", ".join(found[:5]))
