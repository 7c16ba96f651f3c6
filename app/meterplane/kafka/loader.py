"""Kafka -> ClickHouse: raw events and published counters, in large batches.

One consumer group reads the events topic and the counters topic. Order of durable effects
per batch (never mark anything done before its effect is stored):
1. poll up to ``batch_rows`` rows or ``flush_interval_s``, whichever comes first;
2. insert the raw rows into ``events`` and the counter rows into ``counters`` (the same
   tables and Arrow typing as the embedded aggregator, so ``rebuild`` reads both alike);
3. only then commit the consumed offsets.
A crash between 2 and 3 re-inserts the same rows: harmless, because ``events`` keeps one
row per (customer_id, idempotency_key) — the copy with the lowest Kafka offset, as all
copies of an identity share the customer's partition — and ``counters`` keeps the row
with the highest version.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import msgspec
from confluent_kafka import Consumer, KafkaError, Message

from meterplane.core.model import Event, Usage
from meterplane.core.storage import COUNTER_COLUMNS, EVENT_COLUMNS, SqlEngine
from meterplane.core.timeutil import to_us
from meterplane.kafka.records import (
    KIND_EVENTS,
    decode_counter,
    decode_events_record,
    usage_key,
)

log = logging.getLogger(__name__)
_decode_event = msgspec.json.Decoder(Event).decode
_decode_usage = msgspec.json.Decoder(Usage).decode


class ClickHouseLoader:
    """Moves raw events and counters from Kafka into ClickHouse (chdb or a server)."""

    def __init__(
        self,
        bootstrap: str,
        engine: SqlEngine,
        *,
        events_topic: str = "events",
        counters_topic: str = "counters",
        group_id: str = "meterplane-clickhouse",
        batch_rows: int = 100_000,
        flush_interval_s: float = 1.0,
    ) -> None:
        self.engine = engine
        self.events_topic = events_topic
        self.counters_topic = counters_topic
        self.batch_rows = batch_rows
        self.flush_interval_s = flush_interval_s
        self._consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": group_id,
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
                "isolation.level": "read_committed",
                "fetch.min.bytes": 1 << 16,
                "fetch.wait.max.ms": 200,
            }
        )
        self._consumer.subscribe([events_topic, counters_topic])
        self._stop = threading.Event()
        self.rows_inserted = 0
        self.counters_inserted = 0
        self.inserts = 0

    def _empty(self, columns: tuple[str, ...]) -> dict[str, list[Any]]:
        return {c: [] for c in columns}

    def _add_events(self, message: Message, rows: dict[str, list[Any]]) -> None:
        value = message.value()
        if value is None:
            return
        record = decode_events_record(value)
        received = record.received_us
        offset = message.offset()
        for index, raw in zip(record.indexes, record.items, strict=True):
            if record.kind == KIND_EVENTS:
                ev = _decode_event(raw)
                key, name, kind, stamp, resource = (
                    ev.idempotencyKey,
                    ev.eventName,
                    "event",
                    ev.timestamp,
                    ev.resourceId,
                )
            else:
                u = _decode_usage(raw)
                key = u.idempotencyKey or usage_key(record.batch_id, index)
                name, kind, stamp, resource = u.featureId, "usage", u.timestamp, u.resourceId
            rows["customer_id"].append(record.customer_id)
            rows["idempotency_key"].append(key)
            rows["kind"].append(kind)
            rows["name"].append(name)
            rows["timestamp"].append(received if stamp is None else to_us(stamp))
            rows["ingested_at"].append(received)
            rows["resource_id"].append(resource or "")
            rows["payload"].append(bytes(raw))
            rows["log_pos"].append(offset)

    @staticmethod
    def _add_counter(message: Message, rows: dict[str, list[Any]]) -> None:
        value = message.value()
        if value is None:
            return
        c = decode_counter(value)
        rows["customer_id"].append(c.customer_id)
        rows["feature_id"].append(c.feature_id)
        rows["period_start"].append(c.period_start)
        rows["resource_id"].append(c.resource_id)
        rows["period_end"].append(c.period_end)
        rows["value"].append(None if c.value is None else float(c.value))
        rows["updated_at"].append(c.updated_us)
        rows["version"].append(c.version)

    def run_once(self) -> int:
        """Consume one batch, store it, commit it; returns the number of messages."""
        events = self._empty(EVENT_COLUMNS)
        counters = self._empty(COUNTER_COLUMNS)
        deadline = time.monotonic() + self.flush_interval_s
        taken = 0
        while time.monotonic() < deadline and len(events["log_pos"]) < self.batch_rows:
            messages = self._consumer.consume(num_messages=1000, timeout=0.05)
            for message in messages:
                err = message.error()
                if err is not None:
                    if err.code() != KafkaError._PARTITION_EOF:
                        log.warning("loader: %s", err)
                    continue
                taken += 1
                if message.topic() == self.events_topic:
                    self._add_events(message, events)
                else:
                    self._add_counter(message, counters)
        if not taken:
            return 0
        if events["log_pos"]:
            self.engine.insert("events", events)
            self.rows_inserted += len(events["log_pos"])
            self.inserts += 1
        if counters["version"]:
            self.engine.insert("counters", counters)
            self.counters_inserted += len(counters["version"])
            self.inserts += 1
        self._consumer.commit(asynchronous=False)
        return taken

    def run(self) -> None:
        """Load until :meth:`stop` is called."""
        while not self._stop.is_set():
            self.run_once()

    def stop(self) -> None:
        """Ask :meth:`run` to return after its current batch."""
        self._stop.set()

    def close(self) -> None:
        """Close the consumer (offsets were committed batch by batch)."""
        self._consumer.close()
