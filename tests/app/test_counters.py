"""Meter functions, usage reports and order independence of the counters."""

from __future__ import annotations

import copy
import random
from typing import Any

import pytest

from meterplane.core.catalog import Catalog, parse_catalog
from meterplane.core.counters import CounterBook, Outcome

CATALOG: dict[str, Any] = {
    "features": [
        {"id": "n", "type": "METERED", "meter": {"eventName": "e"}},
        {
            "id": "sum",
            "type": "METERED",
            "meter": {"eventName": "e", "aggregation": {"function": "SUM", "field": "v"}},
        },
        {
            "id": "max",
            "type": "METERED",
            "meter": {"eventName": "e", "aggregation": {"function": "MAX", "field": "v"}},
        },
        {
            "id": "min",
            "type": "METERED",
            "meter": {"eventName": "e", "aggregation": {"function": "MIN", "field": "v"}},
        },
        {
            "id": "avg",
            "type": "METERED",
            "meter": {"eventName": "e", "aggregation": {"function": "AVG", "field": "v"}},
        },
        {
            "id": "uniq",
            "type": "METERED",
            "meter": {"eventName": "e", "aggregation": {"function": "UNIQUE", "field": "u"}},
        },
        {
            "id": "last",
            "type": "METERED",
            "meter": {"eventName": "e", "aggregation": {"function": "LATEST", "field": "v"}},
        },
        {
            "id": "us-only",
            "type": "METERED",
            "meter": {
                "eventName": "e",
                "filters": [{"dimension": "region", "operator": "EQUALS", "value": "us"}],
            },
        },
        {"id": "seats", "type": "METERED"},
    ],
    "plans": [{"id": "p", "entitlements": {"n": {"usageLimit": 10, "resetPeriod": "DAY"}}}],
    "customers": [
        {"id": "c", "subscription": {"planId": "p", "startDate": "2026-11-01T00:00:00Z"}}
    ],
}
DAY = 86_400_000_000
T0 = 1_793_491_200_000_000  # 2026-11-01T00:00:00Z


def _catalog() -> Catalog:
    return parse_catalog(CATALOG)


def _apply_all(events: list[tuple[str, int, dict[str, Any]]]) -> CounterBook:
    book = CounterBook(_catalog())
    out = Outcome()
    for key, ts, dims in events:
        book.apply_event("c", "e", key, ts, dims, "", out)
    return book


def _values(book: CounterBook) -> dict[tuple[str, int], Any]:
    return {(k[1], k[2]): v for k, _, v in book.items() if k[3] == ""}


def test_each_function() -> None:
    book = _apply_all(
        [
            ("a", T0 + 1, {"v": 3, "u": "x", "region": "us"}),
            ("b", T0 + 3, {"v": 1.5, "u": "y", "region": "eu"}),
            ("c", T0 + 2, {"v": 10, "u": "x"}),
        ]
    )
    v = _values(book)
    assert v["n", T0] == 3  # the plan resets "n" daily from the anchor
    assert v["sum", 0] == 14.5
    assert v["max", 0] == 10
    assert v["min", 0] == 1.5
    assert v["avg", 0] == pytest.approx(14.5 / 3, abs=0)
    assert v["uniq", 0] == 2
    assert v["last", 0] == 1.5  # latest by timestamp, not by arrival
    assert v["us-only", 0] == 1


def test_missing_or_non_numeric_fields_do_not_count() -> None:
    book = CounterBook(_catalog())
    out = Outcome()
    for i, dims in enumerate([{}, {"v": "7"}, {"v": True}, {"v": 2}]):
        book.apply_event("c", "e", f"k{i}", T0, dims, "", out)
    v = _values(book)
    assert v["sum", 0] == 2
    assert v["n", T0] == 4  # COUNT reads no field: every event counts
    # sum, max, min, avg, last: 3 bad events each; uniq: 4 events without "u"
    assert out.unmetered == 5 * 3 + 4


def test_unique_counts_numbers_by_value_and_strings_apart() -> None:
    book = _apply_all(
        [("a", T0, {"u": 1}), ("b", T0, {"u": 1.0}), ("c", T0, {"u": "1"}), ("d", T0, {"u": True})]
    )
    assert _values(book)["uniq", 0] == 3


def test_late_event_lands_in_its_own_period() -> None:
    book = _apply_all([("now", T0 + 5 * DAY + 10, {}), ("late", T0 + 2 * DAY + 10, {})])
    v = _values(book)
    assert v["n", T0 + 5 * DAY] == 1
    assert v["n", T0 + 2 * DAY] == 1


def test_late_events_find_their_periods_in_any_order() -> None:
    # Periods met before, between, after and before-the-first, in a scrambled order: each
    # event lands in the day that contains it, whichever periods the book has seen.
    rng = random.Random(11)
    days = [9, 2, 5, 3, 9, 0, 7, 2, 4, 1, 8, 6, 0, 3, 9, 5]
    events = [(f"k{i}", T0 + d * DAY + rng.randrange(DAY), {}) for i, d in enumerate(days)]
    book = _apply_all(events)
    counted = {start: v for (f, start), v in _values(book).items() if f == "n"}
    expected = {T0 + d * DAY: days.count(d) for d in set(days)}
    assert counted == expected


def test_a_new_catalog_moves_the_periods_of_later_events() -> None:
    book = _apply_all([("a", T0 + 2 * DAY + 10, {}), ("b", T0 + DAY + 10, {})])
    doc = copy.deepcopy(CATALOG)
    doc["customers"][0]["subscription"]["startDate"] = "2026-11-01T12:00:00Z"
    book.set_catalog(parse_catalog(doc))
    book.apply_event("c", "e", "c", T0 + DAY + 20, {}, "", Outcome())  # a known day before
    noon = DAY // 2
    assert book.value("c", "n", T0 + DAY) == 1  # counted under the old anchor, kept
    assert book.value("c", "n", T0 + noon) == 1  # the new anchor's period of T0 + DAY + 20


def test_set_then_delta() -> None:
    book = CounterBook(_catalog())
    out = Outcome()

    def report(key: str, ts: int, value: float, is_set: bool) -> None:
        book.apply_usage("c", "seats", key, ts, value, is_set, "", out)

    report("s1", T0 + 10, 5, True)
    report("d1", T0 + 20, 2, False)
    assert book.value("c", "seats", 0) == 7
    report("d0", T0 + 5, 100, False)  # before the SET: superseded
    assert book.value("c", "seats", 0) == 7
    report("s0", T0 + 1, 50, True)  # an older SET arriving late changes nothing
    assert book.value("c", "seats", 0) == 7
    report("s2", T0 + 15, 10, True)  # a newer SET: only DELTAs after it add
    assert book.value("c", "seats", 0) == 12
    report("d2", T0 + 30, -3, False)
    assert book.value("c", "seats", 0) == 9


def test_usage_report_on_a_metered_feature_is_not_counted() -> None:
    book = CounterBook(_catalog())
    out = Outcome()
    book.apply_usage("c", "sum", "k", T0, 5, False, "", out)
    assert book.value("c", "sum", 0) is None
    assert out.unmetered == 1


def test_results_do_not_depend_on_arrival_order() -> None:
    rng = random.Random(3)
    events = [
        (
            f"k{i}",
            T0 + rng.randrange(10 * DAY),
            {"v": rng.choice([rng.random() * 1e6, 1e-9, 7]), "u": rng.randrange(50)},
        )
        for i in range(2000)
    ]
    reference = _values(_apply_all(events))
    for _ in range(3):
        shuffled = events[:]
        rng.shuffle(shuffled)
        assert _values(_apply_all(shuffled)) == reference  # exact equality, floats included


def test_float_sum_is_exact_not_left_to_right() -> None:
    book = _apply_all([("a", T0, {"v": 1e16}), ("b", T0, {"v": 1.0}), ("c", T0, {"v": -1e16})])
    assert _values(book)["sum", 0] == 1.0  # naive left-to-right gives 0.0


def test_resource_counters_and_customer_total() -> None:
    book = CounterBook(_catalog())
    out = Outcome()
    book.apply_event("c", "e", "a", T0, {}, "r1", out)
    book.apply_event("c", "e", "b", T0, {}, "r2", out)
    book.apply_event("c", "e", "c", T0, {}, "r1", out)
    assert book.value("c", "n", T0) == 3
    assert book.value("c", "n", T0, "r1") == 2
    assert book.value("c", "n", T0, "r2") == 1


def test_snapshot_restores_every_kind() -> None:
    book = _apply_all([(f"k{i}", T0 + i, {"v": i * 1.1, "u": i % 3}) for i in range(20)])
    book.apply_usage("c", "seats", "s", T0, 4, True, "", Outcome())
    book.apply_usage("c", "seats", "d", T0 + 9, 1, False, "", Outcome())
    copy = CounterBook(_catalog())
    copy.restore(book.snapshot())
    assert _values(copy) == _values(book)
    copy.apply_usage("c", "seats", "d2", T0 + 10, 1, False, "", Outcome())
    assert copy.value("c", "seats", 0) == 6
