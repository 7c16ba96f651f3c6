"""Meter matching and value extraction (DESIGN.md section 4).

Comparison rules, written down once for both engine sets:
- numbers compare numerically (1 == 1.0); booleans are not numbers; strings compare exactly;
- a missing dimension fails every operator except NOT_EQUALS, NOT_IN and IS_BLANK;
- IS_BLANK holds for a missing dimension or a string of only white space;
- CONTAINS / STARTS_WITH / ENDS_WITH apply to string dimensions only.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from meterplane.core.catalog import Filter, Operator

Dims = Mapping[str, Any]
Predicate = Callable[[Dims], bool]
_MISSING = object()


def is_number(v: object) -> bool:
    """True for int/float values that are not booleans."""
    return isinstance(v, int | float) and not isinstance(v, bool)


def _eq(a: object, b: object) -> bool:
    if is_number(a) and is_number(b):
        return a == b
    return type(a) is type(b) and a == b


def _compare(op: Operator, a: float, b: float) -> bool:
    if op is Operator.GREATER_THAN:
        return a > b
    if op is Operator.GREATER_THAN_OR_EQUAL:
        return a >= b
    if op is Operator.LESS_THAN:
        return a < b
    return a <= b


def holds(f: Filter, dims: Dims) -> bool:
    """Whether one filter holds for an event's dimensions."""
    op, want = f.operator, f.value
    v = dims.get(f.dimension, _MISSING)
    if op is Operator.IS_BLANK:
        return v is _MISSING or (isinstance(v, str) and not v.strip())
    if op is Operator.IS_NOT_BLANK:
        return v is not _MISSING and not (isinstance(v, str) and not v.strip())
    if v is _MISSING:
        return op in (Operator.NOT_EQUALS, Operator.NOT_IN)
    if op is Operator.EQUALS:
        return _eq(v, want)
    if op is Operator.NOT_EQUALS:
        return not _eq(v, want)
    if op is Operator.IN:
        return any(_eq(v, w) for w in want)  # type: ignore[union-attr]
    if op is Operator.NOT_IN:
        return not any(_eq(v, w) for w in want)  # type: ignore[union-attr]
    if op in (Operator.CONTAINS, Operator.STARTS_WITH, Operator.ENDS_WITH):
        if not isinstance(v, str):
            return False
        assert isinstance(want, str)  # guaranteed by Filter validation
        if op is Operator.CONTAINS:
            return want in v
        return v.startswith(want) if op is Operator.STARTS_WITH else v.endswith(want)
    if not is_number(v):
        return False
    return _compare(op, v, want)  # type: ignore[arg-type]


def matches(filters: tuple[Filter, ...], dims: Dims) -> bool:
    """Whether every filter holds (no filters: every event matches)."""
    return all(holds(f, dims) for f in filters)


def compile_filters(filters: tuple[Filter, ...]) -> Predicate | None:
    """One predicate for all of a meter's filters (None: no filters, everything matches).

    Operators with a fast form get a dedicated closure; the rest fall back to ``holds``.
    """
    if not filters:
        return None
    preds: list[Predicate] = []
    for f in filters:
        dim, want = f.dimension, f.value
        if f.operator is Operator.EQUALS and isinstance(want, str):
            preds.append(lambda d, dim=dim, want=want: d.get(dim) == want)  # type: ignore[misc]
        elif (
            f.operator is Operator.IN
            and isinstance(want, list)
            and all(isinstance(w, str) for w in want)
        ):
            allowed = frozenset(want)
            preds.append(
                lambda d, dim=dim, allowed=allowed: (  # type: ignore[misc]
                    isinstance(v := d.get(dim), str) and v in allowed
                )
            )
        else:
            preds.append(lambda d, f=f: holds(f, d))  # type: ignore[misc]
    if len(preds) == 1:
        return preds[0]
    return lambda d: all(p(d) for p in preds)
