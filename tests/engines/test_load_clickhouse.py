"""``meterplane load-clickhouse``: raw events reach ClickHouse (chdb here) from Kafka."""

from __future__ import annotations

import os
import time
from pathlib import Path

import msgspec
import pytest
from confluent_kafka import Consumer, KafkaException, TopicPartition

from meterplane.core.storage import ChdbEngine
from meterplane.core.timeutil import now_us
from meterplane.kafka.buffer import KafkaBuffer, KafkaBufferConfig
from meterplane.kafka.records import KIND_EVENTS
from meterplane.testing import engines

pytestmark = pytest.mark.engines


def _committed(bootstrap: str, topic: str, partitions: int) -> int:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "meterplane-clickhouse"})
    try:
        parts = consumer.committed([TopicPartition(topic, p) for p in range(partitions)], 10)
    except KafkaException:  # the group coordinator of a fresh broker may still be loading
        return 0
    finally:
        consumer.close()
    return sum(max(p.offset, 0) for p in parts)


def _end(bootstrap: str, topic: str, partitions: int) -> int:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "probe"})
    try:
        return sum(
            consumer.get_watermark_offsets(TopicPartition(topic, p))[1] for p in range(partitions)
        )
    finally:
        consumer.close()


def test_loader_command_stores_one_row_per_identity(
    kafka_broker: engines.KafkaBroker, tmp_path: Path, topic_name: str
) -> None:
    events_topic, counters_topic = f"{topic_name}-events", f"{topic_name}-counters"
    kafka_broker.create_topic(events_topic, partitions=2)
    kafka_broker.create_topic(counters_topic, partitions=1, config={"cleanup.policy": "compact"})
    buffer = KafkaBuffer(KafkaBufferConfig(kafka_broker.bootstrap, topic=events_topic))
    bodies = [
        msgspec.json.encode(
            {
                "events": [
                    {"customerId": f"c{i % 3}", "eventName": "api_call", "idempotencyKey": f"k{i}"}
                    for i in range(b * 100, b * 100 + 150)  # overlapping: 50 duplicates each
                ]
            }
        )
        for b in range(4)
    ]
    try:
        for body in bodies:
            buffer.append_sync(KIND_EVENTS, now_us(), body)
    finally:
        buffer.close(timeout=5)
    records = sum(
        Consumer(
            {"bootstrap.servers": kafka_broker.bootstrap, "group.id": "probe"}
        ).get_watermark_offsets(TopicPartition(events_topic, p))[1]
        for p in range(2)
    )
    env = dict(
        os.environ,
        METERPLANE_KAFKA_BOOTSTRAP=kafka_broker.bootstrap,
        METERPLANE_DATA_DIR=str(tmp_path / "data"),
    )
    env.pop("METERPLANE_CLICKHOUSE_URL", None)
    meterplane = Path(os.environ.get("VIRTUAL_ENV", ".venv")) / "bin" / "meterplane"
    loader = engines.ManagedProcess(
        [
            str(meterplane if meterplane.exists() else "meterplane"),
            "load-clickhouse",
            "--events-topic",
            events_topic,
            "--counters-topic",
            counters_topic,
        ],
        tmp_path / "loader.log",
        env,
    )
    loader.start()
    try:
        deadline = time.monotonic() + 60
        while _committed(kafka_broker.bootstrap, events_topic, 2) < records:
            assert loader.running, loader.output()[-3000:]
            assert time.monotonic() < deadline, "loader did not commit its offsets"
            time.sleep(0.3)
    finally:
        loader.stop()
    engine = ChdbEngine(tmp_path / "data" / "chdb")
    try:
        table = engine.query_arrow(
            "SELECT count() AS n, uniqExact(customer_id, idempotency_key) AS u, "
            "min(kind) AS kind FROM events FINAL"
        )
    finally:
        engine.close()
    row = table.to_pylist()[0]
    assert row["n"] == row["u"] == 450
    assert row["kind"] in ("event", b"event")
