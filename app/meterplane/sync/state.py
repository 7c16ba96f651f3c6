"""What the change records add up to, and how one record changes it.

Every record *sets* something (the catalog, a customer's subscription, a credit grant by
its id, a governance field) rather than adding to it, so applying a record a second time
(after a crash between its effect and the cursor's persistence) changes nothing. The
result is materialized as a catalog document in the file shape (DESIGN.md 3.3) and
validated with the same parser as a catalog file; a record whose result would not be a
valid catalog is rejected (counted and logged) and the previous state stays in force.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec

from meterplane.core.catalog import Catalog, parse_catalog
from meterplane.core.errors import ConfigError, MeterplaneError
from meterplane.sync.protocol import (
    CHANGE_DATA,
    CatalogData,
    ChangeRecord,
    CreditGrantData,
    CreditRevoke,
    GovernanceData,
    SubscriptionCancel,
    SubscriptionUpsert,
)


class ChangeRejected(MeterplaneError):
    """A change record is malformed or would leave the catalog invalid; nothing changed."""


class CustomerState(msgspec.Struct):
    """A customer's synced subscription and credit grants (by grant id)."""

    subscription: dict[str, Any] | None = None
    credits: dict[str, dict[str, Any]] = {}


class SyncedState(msgspec.Struct):
    """Everything the control plane has told this environment, as of ``seq``."""

    seq: int = 0
    catalog: dict[str, Any] | None = None
    customers: dict[str, CustomerState] = {}
    apiKeys: list[str] | None = None  # noqa: N815 - mirrors the wire field
    rollupIntervalSeconds: float | None = None  # noqa: N815

    def encode(self) -> bytes:
        """JSON form (what the store persists)."""
        return msgspec.json.encode(self)

    @staticmethod
    def decode(data: bytes) -> SyncedState:
        """Inverse of ``encode``."""
        return msgspec.json.decode(data, type=SyncedState)

    def copy(self) -> SyncedState:
        """A deep copy (records are applied to a copy; the original stays valid)."""
        return SyncedState.decode(self.encode())


def _aware(text: str | None, where: str) -> None:
    if text is None:
        return
    try:
        dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ChangeRejected(f"{where}: not an RFC 3339 timestamp: {text!r}") from None
    if dt.tzinfo is None:
        raise ChangeRejected(f"{where}: timestamp needs an offset: {text!r}")


def materialize(state: SyncedState) -> dict[str, Any]:
    """The catalog document (file shape) the state amounts to; deterministic order."""
    cat = state.catalog or {}
    customers = []
    for cid in sorted(state.customers):
        c = state.customers[cid]
        entry: dict[str, Any] = {"id": cid}
        if c.subscription is not None:
            entry["subscription"] = c.subscription
        if c.credits:
            entry["credits"] = [
                {k: v for k, v in g.items() if k not in ("grantId", "customerId")}
                for _, g in sorted(c.credits.items())
            ]
        customers.append(entry)
    doc: dict[str, Any] = {
        "features": cat.get("features", []),
        "plans": cat.get("plans", []),
        "addons": cat.get("addons", []),
        "customers": customers,
    }
    doc["version"] = f"{cat.get('version') or 'synced'}@{state.seq}"
    return doc


def to_catalog(state: SyncedState) -> Catalog:
    """Validate and compile the materialized catalog (``ConfigError`` if invalid)."""
    return parse_catalog(materialize(state), f"synced catalog @{state.seq}")


def apply_change(state: SyncedState, record: ChangeRecord) -> SyncedState:
    """The state after ``record``; ``state`` is not modified. Raises ``ChangeRejected``."""
    kind = CHANGE_DATA[record.type]
    try:
        data: Any = msgspec.convert(record.data, type=kind)
    except msgspec.ValidationError as err:
        raise ChangeRejected(f"{record.type} {record.id}: {err}") from None
    new = state.copy()
    new.seq = record.seq
    if isinstance(data, CatalogData):
        new.catalog = msgspec.to_builtins(data)
    elif isinstance(data, SubscriptionUpsert):
        _aware(data.subscription.startDate, "subscription.startDate")
        _aware(data.subscription.endDate, "subscription.endDate")
        cust = new.customers.setdefault(data.customerId, CustomerState())
        cust.subscription = msgspec.to_builtins(data.subscription)
    elif isinstance(data, SubscriptionCancel):
        _aware(data.cancelledAt, "cancelledAt")
        found = new.customers.get(data.customerId)
        if found is not None and found.subscription is not None:
            found.subscription["status"] = "CANCELLED"
            if data.cancelledAt is not None:
                found.subscription["endDate"] = data.cancelledAt
    elif isinstance(data, CreditGrantData):
        _aware(data.validFrom, "validFrom")
        _aware(data.validUntil, "validUntil")
        cust = new.customers.setdefault(data.customerId, CustomerState())
        grant = msgspec.to_builtins(data)
        if grant.get("validUntil") is None:
            grant.pop("validUntil", None)
        cust.credits[data.grantId] = grant
    elif isinstance(data, CreditRevoke):
        holder = new.customers.get(data.customerId)
        if holder is not None:
            holder.credits.pop(data.grantId, None)
    elif isinstance(data, GovernanceData):
        if data.apiKeys is not None:
            new.apiKeys = list(data.apiKeys)
        if data.rollupIntervalSeconds is not None:
            new.rollupIntervalSeconds = data.rollupIntervalSeconds
    try:
        to_catalog(new)
    except ConfigError as err:
        raise ChangeRejected(f"{record.type} {record.id}: {err}") from None
    return new
