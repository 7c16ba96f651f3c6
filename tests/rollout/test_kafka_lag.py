"""Consumer lag for the health gate from a real Kafka broker (the production lag source)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from meterplane.rollout import KafkaConsumerLag, ProbeError
from meterplane.testing import engines


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[engines.KafkaBroker]:
    engines.ensure_kafka_jars()
    with engines.KafkaBroker(tmp_path_factory.mktemp("kafka-lag")) as running:
        yield running


def first_answer(lag: KafkaConsumerLag) -> float:
    """The first lag the broker can answer: a fresh broker is briefly without a group
    coordinator, which the gate treats like any failed sample (it samples again)."""
    deadline = time.monotonic() + 60
    while True:
        try:
            return lag.lag("s")
        except ProbeError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


@pytest.mark.engines
def test_lag_is_log_end_minus_the_groups_committed_offsets(broker: engines.KafkaBroker) -> None:
    broker.create_topic("events", partitions=2)
    producer = Producer({"bootstrap.servers": broker.bootstrap})
    for i in range(10):
        producer.produce("events", value=b"x", partition=i % 2)
    assert producer.flush(30) == 0

    lag = KafkaConsumerLag({"s": broker.bootstrap}, "meterplane-aggregate", "events")
    assert first_answer(lag) == 10.0  # nothing committed: all of it is behind

    consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "meterplane-aggregate"})
    try:
        consumer.commit(
            offsets=[TopicPartition("events", 0, 4), TopicPartition("events", 1, 5)],
            asynchronous=False,
        )
    finally:
        consumer.close()
    assert lag.lag("s") == 1.0  # partition 0 has 5 records, 4 consumed

    with pytest.raises(ProbeError, match="not found"):
        KafkaConsumerLag({"s": broker.bootstrap}, "g", "no-such-topic", timeout_s=5).lag("s")
    with pytest.raises(ProbeError, match="no Kafka bootstrap"):
        lag.lag("other")
