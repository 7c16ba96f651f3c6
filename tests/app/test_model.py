"""Validation of ingest batches: every bad input is named by index and field."""

from __future__ import annotations

import json
from typing import Any

import pytest

from meterplane.core.errors import InvalidBatch, MalformedBody, TooLarge, field_path
from meterplane.core.model import TimeWindow, decode_events, decode_usages

NOW = 1_795_000_000_000_000  # 2026-11-18T...Z
WINDOW = TimeWindow()
DAY = 86_400_000_000


def _ev(**kw: Any) -> dict[str, Any]:
    return {"customerId": "acme", "eventName": "api_call", "idempotencyKey": "k", **kw}


def _body(*events: dict[str, Any]) -> bytes:
    return json.dumps({"events": list(events)}).encode()


def _errors(body: bytes) -> list[tuple[int | None, str]]:
    with pytest.raises(InvalidBatch) as err:
        decode_events(body, NOW, WINDOW)
    return [(d.index, d.field) for d in err.value.details]


def _iso(us: int) -> str:
    from meterplane.core.timeutil import iso  # noqa: PLC0415

    out = iso(us)
    assert out is not None
    return out


def test_valid_batch_decodes() -> None:
    events = decode_events(
        _body(_ev(), _ev(idempotencyKey="k2", dimensions={"a": 1.5})), NOW, WINDOW
    )
    assert [e.idempotencyKey for e in events] == ["k", "k2"]


@pytest.mark.parametrize(
    ("event", "field"),
    [
        (_ev(customerId=5), "customerId"),
        (_ev(customerId=""), "customerId"),
        (_ev(idempotencyKey="x" * 256), "idempotencyKey"),
        ({"customerId": "a", "idempotencyKey": "k"}, "eventName"),  # missing: named
        (_ev(colour="red"), "colour"),
        (_ev(dimensions={"nested": {"a": 1}}), "dimensions.nested"),
        (_ev(dimensions={"k": "v" * 1025}), "dimensions.k"),
        (_ev(dimensions={f"k{i}": i for i in range(65)}), "dimensions"),
        (_ev(timestamp="2026-11-18T00:00:00"), "timestamp"),
        (_ev(timestamp="yesterday"), "timestamp"),
        (_ev(timestamp=_iso(NOW - 36 * DAY)), "timestamp"),
        (_ev(timestamp=_iso(NOW + 10 * 60_000_000)), "timestamp"),
    ],
)
def test_one_bad_event_is_named(event: dict[str, Any], field: str) -> None:
    body = _body(*[_ev(idempotencyKey=f"ok{i}") for i in range(7)], event, _ev(idempotencyKey="z"))
    assert _errors(body) == [(7, field)]


def test_every_bad_item_is_listed() -> None:
    body = _body(_ev(customerId=1), _ev(), _ev(timestamp="2026-11-18T00:00:00"))
    assert _errors(body) == [(0, "customerId"), (2, "timestamp")]


def test_unknown_and_missing_fields_are_named() -> None:
    """Beside the batch, an unknown field used to give a 422 that named nothing (every item
    on its own was fine); a missing one was called `item`."""
    body = json.dumps({"events": [_ev()], "extra": 1}).encode()
    with pytest.raises(InvalidBatch) as err:
        decode_events(body, NOW, WINDOW)
    assert [(d.index, d.field, d.message) for d in err.value.details] == [
        (None, "extra", "unknown field")
    ]
    usage = json.dumps({"usages": [{"customerId": "a", "featureId": "f", "value": 1}], "x": 0})
    with pytest.raises(InvalidBatch) as err:
        decode_usages(usage.encode(), NOW, WINDOW)
    assert [(d.index, d.field) for d in err.value.details] == [(None, "x")]
    missing = json.dumps({"usages": [{"customerId": "a", "featureId": "f"}]}).encode()
    with pytest.raises(InvalidBatch) as err:
        decode_usages(missing, NOW, WINDOW)
    assert [(d.index, d.field, d.message) for d in err.value.details] == [
        (0, "value", "missing required field")
    ]
    assert _errors(json.dumps({"usages": [_ev()]}).encode()) == [(None, "usages")]


def test_edges_of_the_time_window_are_accepted() -> None:
    decode_events(_body(_ev(timestamp=_iso(NOW - 35 * DAY + 1_000_000))), NOW, WINDOW)
    decode_events(_body(_ev(timestamp=_iso(NOW + 4 * 60_000_000))), NOW, WINDOW)


@pytest.mark.parametrize(
    "body",
    [
        b"\xff\xfe",
        b"{",
        b'{"events": [NaN]}',
        b"not json",
        b'{"events": [1e999999]}'[:-1],
        # A wrong type met before the end: still not JSON, so malformed (400), not 422.
        b"[",
        b'{"events": 5',
        b'{"events": [{"customerId": 1}, {',
        b'{"events": [{"customerId": "a", "eventName": "e", "idempotencyKey": "k"}] x',
    ],
)
def test_malformed_bodies(body: bytes) -> None:
    with pytest.raises(MalformedBody):
        decode_events(body, NOW, WINDOW)
    with pytest.raises(MalformedBody):
        decode_usages(body.replace(b"events", b"usages"), NOW, WINDOW)


@pytest.mark.parametrize("number", [b"1e400", b"-1e400", b"9223372036854775808", b"1e19"])
def test_a_number_out_of_range_is_rejected_naming_its_dimension(number: bytes) -> None:
    assert _errors(
        b'{"events": [{"customerId":"a","eventName":"e","idempotencyKey":"k",'
        b'"dimensions":{"ok":1,"x":' + number + b',"fine":"y"}}]}'
    ) == [(0, "dimensions.x")]


@pytest.mark.parametrize(
    ("loc", "path"),
    [
        (("features", 0, "colour"), "features[0].colour"),
        (("query", "featureId"), "query.featureId"),
        (("plans", 1, "entitlements", "x", "usageLimit"), "plans[1].entitlements.x.usageLimit"),
        ((2, "x"), "[2].x"),
        ((), ""),
    ],
)
def test_field_paths_read_as_the_messages_write_them(loc: tuple[str | int, ...], path: str) -> None:
    assert field_path(loc) == path


def test_the_message_names_batch_level_fields_without_an_index() -> None:
    with pytest.raises(InvalidBatch) as err:
        decode_events(b'{"events": "nope"}', NOW, WINDOW)
    assert str(err.value) == "1 invalid item(s): events: Expected `array`, got `str`"
    with pytest.raises(InvalidBatch) as err:
        decode_events(_body(_ev(), _ev(customerId=1)), NOW, WINDOW)
    assert str(err.value).startswith("1 invalid item(s): [1].customerId: ")


@pytest.mark.parametrize("body", [b"[]", b'{"events": {}}', b'{"events": []}', b'{"evts": []}'])
def test_wrong_top_level_shape(body: bytes) -> None:
    with pytest.raises(InvalidBatch):
        decode_events(body, NOW, WINDOW)


def test_more_than_1000_items_is_too_large() -> None:
    with pytest.raises(TooLarge):
        decode_events(_body(*[_ev(idempotencyKey=str(i)) for i in range(1001)]), NOW, WINDOW)
    # Too many items wins over invalid ones: the client must split the batch first.
    with pytest.raises(TooLarge):
        decode_events(_body(*[_ev(customerId=1) for _ in range(1001)]), NOW, WINDOW)


def test_usage_validation() -> None:
    ok = json.dumps({"usages": [{"customerId": "a", "featureId": "seats", "value": 3}]})
    assert decode_usages(ok.encode(), NOW, WINDOW)[0].updateBehavior == "DELTA"
    bad = json.dumps(
        {"usages": [{"customerId": "a", "featureId": "s", "value": 1, "updateBehavior": "ADD"}]}
    )
    with pytest.raises(InvalidBatch) as err:
        decode_usages(bad.encode(), NOW, WINDOW)
    assert err.value.details[0].field == "updateBehavior"


@pytest.mark.parametrize(
    ("value", "accepted"),
    [
        (2**63 - 1, True),
        (-(2**63), True),
        (9.2e18, True),
        (2**63, False),
        (1e19, False),
        (-1.7976931348623157e308, False),
    ],
)
def test_numbers_lie_within_the_int64_range(value: float, accepted: bool) -> None:
    """Two numbers near the float maximum used to add up to infinity and stop counting."""
    events = _body(_ev(dimensions={"ok": 1, "n": value}))
    usages = json.dumps({"usages": [{"customerId": "a", "featureId": "f", "value": value}]})
    if accepted:
        assert decode_events(events, NOW, WINDOW)[0].dimensions["n"] == value
        assert decode_usages(usages.encode(), NOW, WINDOW)[0].value == value
        return
    assert _errors(events) == [(0, "dimensions.n")]
    with pytest.raises(InvalidBatch) as err:
        decode_usages(usages.encode(), NOW, WINDOW)
    assert [(d.index, d.field) for d in err.value.details] == [(0, "value")]
    bounds = ("9223372036854775807", "9223372036854775808", "9.223372036854776e+18")
    assert any(b in err.value.details[0].message for b in bounds)  # the message says the bound
