"""The catalog (DESIGN.md 3.3): features, meters, plans, add-ons, customers.

Parsed by frozen pydantic models that forbid unknown keys, then cross-checked (every
plan, add-on and feature reference must resolve) and compiled into lookup tables so that
the aggregator's and the decision path's work per event or check is a few dict lookups.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from meterplane.core.errors import ConfigError, field_path
from meterplane.core.timeutil import to_us

DEFAULT_CATALOG = Path(__file__).resolve().parent.parent / "data" / "catalog.yaml"


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class FeatureType(StrEnum):
    """BOOLEAN: on/off. NUMERIC: a configured number. METERED: counted usage against a limit."""

    BOOLEAN = "BOOLEAN"
    NUMERIC = "NUMERIC"
    METERED = "METERED"


class Operator(StrEnum):
    """Filter operators on event dimensions."""

    EQUALS = "EQUALS"
    NOT_EQUALS = "NOT_EQUALS"
    IN = "IN"
    NOT_IN = "NOT_IN"
    GREATER_THAN = "GREATER_THAN"
    GREATER_THAN_OR_EQUAL = "GREATER_THAN_OR_EQUAL"
    LESS_THAN = "LESS_THAN"
    LESS_THAN_OR_EQUAL = "LESS_THAN_OR_EQUAL"
    CONTAINS = "CONTAINS"
    STARTS_WITH = "STARTS_WITH"
    ENDS_WITH = "ENDS_WITH"
    IS_BLANK = "IS_BLANK"
    IS_NOT_BLANK = "IS_NOT_BLANK"


class Function(StrEnum):
    """Meter aggregation functions."""

    COUNT = "COUNT"
    SUM = "SUM"
    MAX = "MAX"
    MIN = "MIN"
    AVG = "AVG"
    UNIQUE = "UNIQUE"
    LATEST = "LATEST"


class ResetPeriod(StrEnum):
    """How often a usage counter starts again from zero."""

    HOUR = "HOUR"
    DAY = "DAY"
    WEEK = "WEEK"
    MONTH = "MONTH"
    YEAR = "YEAR"


Scalar = str | int | float | bool
_NUMERIC_OPS = {
    Operator.GREATER_THAN,
    Operator.GREATER_THAN_OR_EQUAL,
    Operator.LESS_THAN,
    Operator.LESS_THAN_OR_EQUAL,
}
_STRING_OPS = {Operator.CONTAINS, Operator.STARTS_WITH, Operator.ENDS_WITH}
_LIST_OPS = {Operator.IN, Operator.NOT_IN}
_NO_VALUE_OPS = {Operator.IS_BLANK, Operator.IS_NOT_BLANK}


class Filter(_Frozen):
    """``dimension OPERATOR value``; all filters of a meter must hold."""

    dimension: Annotated[str, Field(min_length=1)]
    operator: Operator
    value: Scalar | list[Scalar] | None = None

    @model_validator(mode="after")
    def _value_fits_operator(self) -> Filter:
        op, v = self.operator, self.value
        if op in _NO_VALUE_OPS:
            if v is not None:
                raise ValueError(f"{op} takes no value")
        elif op in _LIST_OPS:
            if not isinstance(v, list) or not v:
                raise ValueError(f"{op} needs a non-empty list value")
        elif op in _NUMERIC_OPS:
            if isinstance(v, bool) or not isinstance(v, int | float):
                raise ValueError(f"{op} needs a numeric value")
        elif op in _STRING_OPS:
            if not isinstance(v, str):
                raise ValueError(f"{op} needs a string value")
        elif v is None or isinstance(v, list):
            raise ValueError(f"{op} needs a single value")
        return self


class Aggregation(_Frozen):
    """The meter function and, for all but COUNT, the dimension it reads."""

    function: Function
    field: str | None = None

    @model_validator(mode="after")
    def _field_when_needed(self) -> Aggregation:
        if self.function is Function.COUNT and self.field is not None:
            raise ValueError("COUNT takes no field")
        if self.function is not Function.COUNT and not self.field:
            raise ValueError(f"{self.function} needs a field (the dimension it reads)")
        return self


class Meter(_Frozen):
    """Which events count for a feature and how."""

    eventName: Annotated[str, Field(min_length=1)]  # noqa: N815
    filters: tuple[Filter, ...] = ()
    aggregation: Aggregation = Aggregation(function=Function.COUNT)


class Feature(_Frozen):
    """A feature customers may be entitled to."""

    id: Annotated[str, Field(min_length=1, max_length=255)]
    type: FeatureType
    meter: Meter | None = None

    @model_validator(mode="after")
    def _meter_only_on_metered(self) -> Feature:
        if self.meter is not None and self.type is not FeatureType.METERED:
            raise ValueError("only METERED features have a meter")
        return self


class Entitlement(_Frozen):
    """What a plan or add-on grants for one feature."""

    usageLimit: Annotated[float, Field(ge=0)] | None = None  # noqa: N815
    resetPeriod: ResetPeriod | None = None  # noqa: N815


class Plan(_Frozen):
    """A plan: entitlements by feature id."""

    id: Annotated[str, Field(min_length=1)]
    entitlements: dict[str, Entitlement] = {}


class SubscriptionStatus(StrEnum):
    """Only ACTIVE (and TRIALING) subscriptions grant anything."""

    ACTIVE = "ACTIVE"
    TRIALING = "TRIALING"
    PAST_DUE = "PAST_DUE"
    CANCELLED = "CANCELLED"


class Subscription(_Frozen):
    """A customer's subscription: plan, add-ons, anchor date, status."""

    planId: str  # noqa: N815
    addons: tuple[str, ...] = ()
    startDate: datetime  # noqa: N815
    endDate: datetime | None = None  # noqa: N815
    status: SubscriptionStatus = SubscriptionStatus.ACTIVE

    @field_validator("startDate", "endDate")
    @classmethod
    def _aware(cls, v: datetime | None) -> datetime | None:
        if v is not None and v.tzinfo is None:
            raise ValueError("timestamp must carry an offset (e.g. 2026-11-01T00:00:00Z)")
        return v


class CreditGrant(_Frozen):
    """Extra allowance for one feature, added to the limit while valid."""

    featureId: str  # noqa: N815
    amount: Annotated[float, Field(gt=0)]
    validFrom: datetime  # noqa: N815
    validUntil: datetime | None = None  # noqa: N815


class Customer(_Frozen):
    """A customer and its subscription."""

    id: Annotated[str, Field(min_length=1, max_length=255)]
    subscription: Subscription | None = None
    credits: tuple[CreditGrant, ...] = ()


class CatalogDoc(_Frozen):
    """The whole catalog file."""

    features: tuple[Feature, ...] = ()
    plans: tuple[Plan, ...] = ()
    addons: tuple[Plan, ...] = ()
    customers: tuple[Customer, ...] = ()
    version: str | None = None


# ---------------------------------------------------------------- compiled form


class Resolved(_Frozen):
    """One customer's entitlement to one feature, plan and add-ons merged."""

    feature_id: str
    feature_type: FeatureType
    usage_limit: float | None
    reset_period: ResetPeriod | None
    anchor_us: int


class Catalog:
    """A validated catalog compiled into lookup tables (immutable once built)."""

    def __init__(self, doc: CatalogDoc) -> None:
        self.doc = doc
        self.features: dict[str, Feature] = {f.id: f for f in doc.features}
        self.customers: dict[str, Customer] = {c.id: c for c in doc.customers}
        self.meters_by_event: dict[str, list[Feature]] = {}
        for f in doc.features:
            if f.meter is not None:
                self.meters_by_event.setdefault(f.meter.eventName, []).append(f)
        self.entitlements: dict[str, dict[str, Resolved]] = {
            c.id: self._resolve(c) for c in doc.customers
        }

    def _resolve(self, customer: Customer) -> dict[str, Resolved]:
        sub = customer.subscription
        if sub is None:
            return {}
        plans = {p.id: p for p in self.doc.plans}
        addons = {a.id: a for a in self.doc.addons}
        sources = [plans[sub.planId], *(addons[a] for a in sub.addons)]
        out: dict[str, Resolved] = {}
        for source in sources:
            for fid, ent in source.entitlements.items():
                feature = self.features[fid]
                prev = out.get(fid)
                if prev is None:
                    out[fid] = Resolved(
                        feature_id=fid,
                        feature_type=feature.type,
                        usage_limit=ent.usageLimit,
                        reset_period=ent.resetPeriod,
                        anchor_us=to_us(sub.startDate),
                    )
                    continue
                # Add-on limits add to the plan's; unlimited anywhere stays unlimited. The
                # plan's reset period wins, so one counter serves every source.
                limit = (
                    None
                    if prev.usage_limit is None or ent.usageLimit is None
                    else prev.usage_limit + ent.usageLimit
                )
                out[fid] = prev.model_copy(update={"usage_limit": limit})
        return out

    def resolved(self, customer_id: str, feature_id: str) -> Resolved | None:
        """The customer's merged entitlement to a feature, if any."""
        return self.entitlements.get(customer_id, {}).get(feature_id)

    def period_spec(self, customer_id: str, feature_id: str) -> tuple[ResetPeriod | None, int]:
        """(reset period, anchor) for counting a feature's usage for a customer.

        Usage of a customer or feature the catalog does not (yet) know is counted over all
        time; ``rebuild`` re-buckets it when the catalog later names a period.
        """
        r = self.resolved(customer_id, feature_id)
        if r is None:
            return None, 0
        return r.reset_period, r.anchor_us


def _check_references(doc: CatalogDoc) -> list[str]:
    problems: list[str] = []
    features = {f.id for f in doc.features}
    plan_ids = {p.id for p in doc.plans}
    addon_ids = {a.id for a in doc.addons}
    id_lists: tuple[tuple[str, list[str]], ...] = (
        ("features", [f.id for f in doc.features]),
        ("plans", [p.id for p in doc.plans]),
        ("addons", [a.id for a in doc.addons]),
        ("customers", [c.id for c in doc.customers]),
    )
    for kind, ids in id_lists:
        seen: set[str] = set()
        for i, item_id in enumerate(ids):
            if item_id in seen:
                problems.append(f"{kind}[{i}].id: duplicate id {item_id!r}")
            seen.add(item_id)
    by_id = {f.id: f for f in doc.features}
    for kind, items in (("plans", doc.plans), ("addons", doc.addons)):
        for i, p in enumerate(items):
            for fid, ent in p.entitlements.items():
                where = f"{kind}[{i}].entitlements.{fid}"
                if fid not in features:
                    problems.append(f"{where}: unknown feature {fid!r}")
                elif by_id[fid].type is FeatureType.BOOLEAN and (
                    ent.usageLimit is not None or ent.resetPeriod is not None
                ):
                    problems.append(f"{where}: BOOLEAN feature takes no usageLimit/resetPeriod")
    for i, c in enumerate(doc.customers):
        sub = c.subscription
        if sub is not None:
            if sub.planId not in plan_ids:
                problems.append(f"customers[{i}].subscription.planId: unknown plan {sub.planId!r}")
            for j, a in enumerate(sub.addons):
                if a not in addon_ids:
                    problems.append(
                        f"customers[{i}].subscription.addons[{j}]: unknown add-on {a!r}"
                    )
        for j, g in enumerate(c.credits):
            if g.featureId not in features:
                problems.append(f"customers[{i}].credits[{j}].featureId: unknown {g.featureId!r}")
    return problems


def parse_catalog(data: Mapping[str, Any], source: str = "catalog") -> Catalog:
    """Validate catalog data; ``ConfigError`` names the path and reason of every problem."""
    try:
        doc = CatalogDoc.model_validate(data)
    except ValidationError as err:
        lines = [f"{field_path(e['loc']) or '(top)'}: {e['msg']}" for e in err.errors()]
        raise ConfigError(f"{source}: " + "; ".join(lines)) from None
    problems = _check_references(doc)
    if problems:
        raise ConfigError(f"{source}: " + "; ".join(problems))
    return Catalog(doc)


def load_catalog(path: Path | None = None) -> Catalog:
    """Read and validate a catalog YAML file (the bundled sample by default)."""
    path = path or DEFAULT_CATALOG
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as err:
        raise ConfigError(f"METERPLANE_CATALOG: cannot read {path}: {err.strerror}") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping")
    return parse_catalog(data, str(path))
