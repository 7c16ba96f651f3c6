"""Every filter operator, including missing dimensions and type mismatches."""

from __future__ import annotations

from typing import Any

import pytest

from meterplane.core.catalog import Filter, Operator
from meterplane.core.meters import compile_filters, holds

DIMS: dict[str, Any] = {"region": "us-east", "n": 5, "f": 2.5, "flag": True, "blank": "  "}

CASES = [
    (Operator.EQUALS, "region", "us-east", True),
    (Operator.EQUALS, "region", "us", False),
    (Operator.EQUALS, "n", 5.0, True),  # numbers compare numerically
    (Operator.EQUALS, "flag", 1, False),  # booleans are not numbers
    (Operator.EQUALS, "missing", "x", False),
    (Operator.NOT_EQUALS, "region", "eu", True),
    (Operator.NOT_EQUALS, "region", "us-east", False),
    (Operator.NOT_EQUALS, "missing", "x", True),
    (Operator.IN, "region", ["eu", "us-east"], True),
    (Operator.IN, "region", ["eu"], False),
    (Operator.IN, "n", [4, 5], True),
    (Operator.IN, "missing", ["x"], False),
    (Operator.NOT_IN, "region", ["eu"], True),
    (Operator.NOT_IN, "region", ["us-east"], False),
    (Operator.NOT_IN, "missing", ["x"], True),
    (Operator.GREATER_THAN, "n", 4, True),
    (Operator.GREATER_THAN, "n", 5, False),
    (Operator.GREATER_THAN, "region", 1, False),  # a string is not a number
    (Operator.GREATER_THAN_OR_EQUAL, "n", 5, True),
    (Operator.GREATER_THAN_OR_EQUAL, "f", 2.6, False),
    (Operator.LESS_THAN, "f", 3, True),
    (Operator.LESS_THAN, "f", 2.5, False),
    (Operator.LESS_THAN_OR_EQUAL, "f", 2.5, True),
    (Operator.LESS_THAN_OR_EQUAL, "missing", 1, False),
    (Operator.CONTAINS, "region", "s-e", True),
    (Operator.CONTAINS, "region", "west", False),
    (Operator.CONTAINS, "n", "5", False),  # string operators need string dimensions
    (Operator.STARTS_WITH, "region", "us", True),
    (Operator.STARTS_WITH, "region", "east", False),
    (Operator.ENDS_WITH, "region", "east", True),
    (Operator.ENDS_WITH, "region", "us", False),
    (Operator.IS_BLANK, "missing", None, True),
    (Operator.IS_BLANK, "blank", None, True),
    (Operator.IS_BLANK, "region", None, False),
    (Operator.IS_NOT_BLANK, "region", None, True),
    (Operator.IS_NOT_BLANK, "blank", None, False),
    (Operator.IS_NOT_BLANK, "missing", None, False),
]


@pytest.mark.parametrize(("op", "dim", "value", "expected"), CASES)
def test_operator(op: Operator, dim: str, value: Any, expected: bool) -> None:
    f = Filter(dimension=dim, operator=op, value=value)
    assert holds(f, DIMS) is expected
    compiled = compile_filters((f,))
    assert compiled is not None
    assert compiled(DIMS) is expected  # the fast path agrees with the reference


def test_every_operator_is_covered() -> None:
    assert {c[0] for c in CASES} == set(Operator)


def test_all_filters_must_hold() -> None:
    filters = (
        Filter(dimension="region", operator=Operator.STARTS_WITH, value="us"),
        Filter(dimension="n", operator=Operator.GREATER_THAN, value=10),
    )
    pred = compile_filters(filters)
    assert pred is not None
    assert not pred(DIMS)
    assert pred({**DIMS, "n": 11})
    assert compile_filters(()) is None


@pytest.mark.parametrize(
    ("op", "value"),
    [
        (Operator.IN, "us"),
        (Operator.IN, []),
        (Operator.GREATER_THAN, "5"),
        (Operator.GREATER_THAN, True),
        (Operator.CONTAINS, 5),
        (Operator.IS_BLANK, "x"),
        (Operator.EQUALS, None),
    ],
)
def test_filter_value_must_fit_the_operator(op: Operator, value: Any) -> None:
    with pytest.raises(ValueError, match=op.value):
        Filter(dimension="d", operator=op, value=value)
