"""The engines harness itself: a real broker round-trip and a PyFlink local-mode read."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest
from confluent_kafka import Consumer, KafkaError, Producer

from meterplane.testing import engines

pytestmark = pytest.mark.engines


def _produce(bootstrap: str, topic: str, records: list[tuple[str, str]]) -> None:
    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "acks": "all",
            "enable.idempotence": True,
            "compression.type": "lz4",
        }
    )
    failures: list[KafkaError] = []

    def report(err: KafkaError | None, _msg: object) -> None:
        if err is not None:
            failures.append(err)

    for key, value in records:
        producer.produce(topic, key=key.encode(), value=value.encode(), on_delivery=report)
    assert producer.flush(30) == 0
    assert failures == []


def _consume_all(bootstrap: str, topic: str, expected: int) -> list[tuple[str, str, int]]:
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"check-{topic}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([topic])
    seen: list[tuple[str, str, int]] = []
    deadline = time.monotonic() + 30
    try:
        while len(seen) < expected and time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is None or message.error() is not None:
                continue
            seen.append((message.key().decode(), message.value().decode(), message.partition()))
    finally:
        consumer.close()
    return seen


def test_broker_round_trip_with_idempotent_acks_all(
    kafka_broker: engines.KafkaBroker, topic_name: str
) -> None:
    kafka_broker.create_topic(topic_name, partitions=3)
    records = [(f"customer-{i % 5}", f"event-{i}") for i in range(200)]
    _produce(kafka_broker.bootstrap, topic_name, records)

    seen = _consume_all(kafka_broker.bootstrap, topic_name, len(records))

    assert sorted((k, v) for k, v, _ in seen) == sorted(records)
    # Keyed records keep their per-key order and land on one partition per key.
    for key in {k for k, _ in records}:
        in_order = [v for k, v, _ in seen if k == key]
        assert in_order == [v for k, v in records if k == key]
        assert len({p for k, _, p in seen if k == key}) == 1


def test_pyflink_local_mode_reads_topic_through_connector(
    kafka_broker: engines.KafkaBroker,
    topic_name: str,
    flink_python: Path,
    flink_connector_jar: Path,
) -> None:
    kafka_broker.create_topic(topic_name, partitions=2)
    values = [f"value-{i}" for i in range(25)]
    _produce(kafka_broker.bootstrap, topic_name, [(v, v) for v in values])

    result = engines.run_flink_module(
        flink_python,
        "meterplane_flink.probe",
        [
            "--bootstrap",
            kafka_broker.bootstrap,
            "--topic",
            topic_name,
            "--connector-jar",
            str(flink_connector_jar),
        ],
    )

    assert result.returncode == 0, result.stderr[-4000:]
    lines = result.stdout.splitlines()
    got = sorted(line.removeprefix("PROBE ") for line in lines if line.startswith("PROBE "))
    assert got == sorted(v.upper() for v in values)
    assert "PROBE-END 25" in lines


def test_cluster_ids_never_start_with_a_dash(monkeypatch: pytest.MonkeyPatch) -> None:
    """An id starting with "-" made the storage tool fail to format (one in 64 starts)."""
    dashed = uuid.UUID(bytes=b"\xf8" + bytes(15))  # base64url of 0xf8... begins with "-"
    plain = uuid.UUID(bytes=bytes(16))
    drawn = iter([dashed, plain])
    monkeypatch.setattr(engines.uuid, "uuid4", lambda: next(drawn))
    assert engines._cluster_id() == "AAAAAAAAAAAAAAAAAAAAAA"
