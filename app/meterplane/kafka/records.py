"""The records on the events and counters topics (shared by ingest, Flink and readers).

Events topic: one record per (request, customer) chunk, key = customerId. A request's
items are grouped by customer (so each record is keyed by its customer and lands on that
customer's partition, keeping per-customer order) and split so no record exceeds
``max_record_bytes``. The items are the request's JSON objects byte for byte
(``msgspec.Raw``): they are decoded once more only where they are counted.

Counters topic (compacted): key ``customer \\x1f feature \\x1f period_start \\x1f resource``,
value a :class:`CounterRecord`. ``version`` is the number of updates the counter has
received; it only grows, so a reader keeps, per key, the record with the highest version.
That makes the stream safe to replay: after a Flink restart from a checkpoint the job
re-emits intermediate values with versions the reader has already passed. A record with
no value (a tombstone) follows a counter's last value once its period is final and has
left the job's state: compaction then drops the key; readers skip tombstones.

Only stdlib + msgspec here: the Flink job imports this module in its own environment.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

import msgspec

KIND_EVENTS = 1
KIND_USAGE = 2
DEFAULT_MAX_RECORD_BYTES = 512 * 1024
KEY_SEP = "\x1f"


class EventsRecord(msgspec.Struct, array_like=True):
    """One chunk of one request for one customer, as stored on the events topic."""

    customer_id: str
    kind: int
    received_us: int
    batch_id: str
    # Index of each item in the original request: keyless usage reports get the
    # idempotency key ``~{batch_id}:{index}`` (stable across replays of this record).
    indexes: list[int]
    items: list[msgspec.Raw]


class _CustomerOnly(msgspec.Struct):
    customerId: str  # noqa: N815 - wire name


class _RawBatch(msgspec.Struct):
    events: list[msgspec.Raw] | None = None
    usages: list[msgspec.Raw] | None = None


_encode = msgspec.json.Encoder().encode
_decode_record = msgspec.json.Decoder(EventsRecord).decode
_decode_customer = msgspec.json.Decoder(_CustomerOnly).decode
_decode_batch = msgspec.json.Decoder(_RawBatch).decode


def split_batch(
    kind: int,
    received_us: int,
    body: bytes,
    max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES,
    batch_id: str | None = None,
    customers: Sequence[str] | None = None,
) -> list[tuple[bytes, bytes]]:
    """(key, value) records for an already validated request body, in request order.

    ``customers`` (each item's customerId, when the caller has decoded the batch already)
    saves reading them from the raw items again.
    """
    raw = _decode_batch(body)
    items = (raw.events if kind == KIND_EVENTS else raw.usages) or []
    bid = batch_id or uuid.uuid4().hex
    if customers is None or len(customers) != len(items):
        customers = [_decode_customer(item).customerId for item in items]
    groups: dict[str, list[tuple[int, msgspec.Raw]]] = {}
    for i, (customer, item) in enumerate(zip(customers, items, strict=True)):
        groups.setdefault(customer, []).append((i, item))
    out: list[tuple[bytes, bytes]] = []
    for customer, members in groups.items():
        key = customer.encode()
        chunk: list[tuple[int, msgspec.Raw]] = []
        size = 0
        for index, item in members:
            if chunk and size + len(item) > max_record_bytes:
                out.append((key, _encode_chunk(customer, kind, received_us, bid, chunk)))
                chunk, size = [], 0
            chunk.append((index, item))
            size += len(item) + 8
        out.append((key, _encode_chunk(customer, kind, received_us, bid, chunk)))
    return out


def _encode_chunk(
    customer: str,
    kind: int,
    received_us: int,
    batch_id: str,
    chunk: list[tuple[int, msgspec.Raw]],
) -> bytes:
    return _encode(
        EventsRecord(
            customer, kind, received_us, batch_id, [i for i, _ in chunk], [r for _, r in chunk]
        )
    )


class _RecordHead(msgspec.Struct, array_like=True):
    customer_id: str


_decode_head = msgspec.json.Decoder(_RecordHead).decode


def record_customer(value: bytes) -> str:
    """The customer of an events-topic record, reading only the head of the value."""
    return _decode_head(value).customer_id


def decode_events_record(value: bytes) -> EventsRecord:
    """Parse one events-topic record value."""
    return _decode_record(value)


def usage_key(batch_id: str, index: int) -> str:
    """The idempotency key given to a usage report that came without one."""
    return f"~{batch_id}:{index}"


class CounterRecord(msgspec.Struct, array_like=True):
    """One counter's value as published on the counters topic."""

    customer_id: str
    feature_id: str
    period_start: int
    resource_id: str
    period_end: int | None
    value: int | float | None
    version: int
    updated_us: int


_decode_counter = msgspec.json.Decoder(CounterRecord).decode


def counter_key(customer: str, feature: str, period_start: int, resource: str) -> bytes:
    """The compaction key of a counter on the counters topic."""
    return KEY_SEP.join((customer, feature, str(period_start), resource)).encode()


def encode_counter(record: CounterRecord) -> bytes:
    """Serialize a counter record value."""
    return _encode(record)


def decode_counter(value: bytes) -> CounterRecord:
    """Parse a counter record value."""
    return _decode_counter(value)
