"""The events/counters topic record format (pure, no broker)."""

from __future__ import annotations

import msgspec

from meterplane.kafka.records import (
    KIND_EVENTS,
    KIND_USAGE,
    CounterRecord,
    counter_key,
    decode_counter,
    decode_events_record,
    encode_counter,
    record_customer,
    split_batch,
    usage_key,
)


def _body(items: list[dict[str, object]], field: str = "events") -> bytes:
    return msgspec.json.encode({field: items})


def test_split_groups_by_customer_keeps_order_and_bytes() -> None:
    body = (
        b'{"events": [{"customerId": "a", "eventName": "x", "idempotencyKey": "1",'
        b' "dimensions": {"n": 1.50}}, {"customerId":"b","eventName":"x","idempotencyKey":"2"},'
        b' {"customerId":"a","eventName":"y","idempotencyKey":"3"}]}'
    )
    records = split_batch(KIND_EVENTS, 42, body, batch_id="B")

    assert [k for k, _ in records] == [b"a", b"b"]
    first = decode_events_record(records[0][1])
    assert (first.customer_id, first.kind, first.received_us, first.batch_id) == ("a", 1, 42, "B")
    assert first.indexes == [0, 2]
    # Items travel byte for byte as the client sent them (1.50 stays 1.50).
    assert bytes(first.items[0]) in body
    assert b'"n": 1.50' in bytes(first.items[0])
    assert record_customer(records[1][1]) == "b"
    assert decode_events_record(records[1][1]).indexes == [1]


def test_split_caps_record_size_without_losing_items() -> None:
    items = [
        {
            "customerId": "a",
            "eventName": "x",
            "idempotencyKey": f"k{i}",
            "dimensions": {"p": "x" * 200},
        }
        for i in range(50)
    ]
    records = split_batch(KIND_EVENTS, 1, _body(items), max_record_bytes=2_000)

    assert len(records) > 5
    assert all(len(v) < 2_000 + 600 for _, v in records)
    decoded = [decode_events_record(v) for _, v in records]
    assert [i for r in decoded for i in r.indexes] == list(range(50))


def test_usage_records_and_generated_keys() -> None:
    body = _body([{"customerId": "a", "featureId": "seats", "value": 3}], "usages")
    ((key, value),) = split_batch(KIND_USAGE, 7, body, batch_id="B1")
    record = decode_events_record(value)
    assert key == b"a"
    assert record.kind == KIND_USAGE
    assert usage_key(record.batch_id, record.indexes[0]) == "~B1:0"


def test_counter_record_round_trip_keeps_ints_and_floats_exact() -> None:
    for value in (3, 0.1 + 0.2, None, -7, 1e300):
        record = CounterRecord("c", "f", 10, "r", None, value, 4, 99)
        back = decode_counter(encode_counter(record))
        assert back == record
        assert type(back.value) is type(value)
    assert counter_key("c", "f", 10, "") == b"c\x1ff\x1f10\x1f"
