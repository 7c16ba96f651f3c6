"""The Flink job killed mid-stream and restarted from its checkpoint gives exact counters."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient

from meterplane.core.catalog import load_catalog
from meterplane.core.counters import CounterKey, Number
from meterplane.core.timeutil import now_us
from meterplane.kafka.buffer import KafkaBuffer, KafkaBufferConfig
from meterplane.kafka.counters import CounterStream
from meterplane.testing import engines
from tests.engines.traffic import embedded_counters, generate, published_counters

# Flink starts take ~15-45 s each on a loaded 2-core machine: allow more than the default.
pytestmark = [pytest.mark.engines, pytest.mark.timeout(600)]


def _end_offsets(bootstrap: str, topic: str, partitions: int) -> list[TopicPartition]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "offsets-probe"})
    try:
        return [
            TopicPartition(topic, p, consumer.get_watermark_offsets(TopicPartition(topic, p))[1])
            for p in range(partitions)
        ]
    finally:
        consumer.close()


def _wait(
    predicate: object,
    timeout: float,
    what: str,
    job: engines.ManagedProcess,
    explain: Callable[[], str] = str,
) -> None:
    assert callable(predicate)
    deadline = time.monotonic() + timeout
    while not predicate():
        assert job.running, f"job died while waiting for {what}:\n{job.output()[-3000:]}"
        if time.monotonic() >= deadline:
            pytest.fail(
                f"timed out waiting for {what}: {explain()}\njob output:\n{job.output()[-3000:]}"
            )
        time.sleep(0.2)


def _differences(
    stream: CounterStream, expected: dict[CounterKey, Number | None], work: Path
) -> str:
    """What a timed-out wait for ``expected`` saw instead, for the failure message."""
    published = published_counters(stream)
    wrong = sorted(
        k for k in expected.keys() | published.keys() if published.get(k) != expected.get(k)
    )
    sample = "\n".join(
        f"  {k}: published {published.get(k)!r}, expected {expected.get(k)!r}" for k in wrong[:10]
    )
    checkpoints = sorted(
        (p.stat().st_mtime_ns, str(p.relative_to(work)))
        for p in (work / "checkpoints").glob("*/chk-*/_metadata")
    )
    return (
        f"{len(wrong)} of {len(expected)} counters differ "
        f"(applied {stream.applied}, stale {stream.stale}):\n{sample}\n"
        f"completed checkpoints, oldest first: {[name for _, name in checkpoints]}"
    )


def test_job_killed_mid_stream_restores_checkpoint_without_loss_or_double_count(
    kafka_broker: engines.KafkaBroker, tmp_path: Path, topic_name: str
) -> None:
    events_topic, counters_topic = f"{topic_name}-events", f"{topic_name}-counters"
    kafka_broker.create_topic(events_topic, partitions=3)
    kafka_broker.create_topic(counters_topic, partitions=3, config={"cleanup.policy": "compact"})
    stream = generate(now_us(), tmp_path, batches=16, size=300)
    assert stream.catalog_path is not None
    catalog = load_catalog(stream.catalog_path)
    half = len(stream.requests) // 2
    part1, part2 = stream.requests[:half], stream.requests[half:]
    expected_part1, plane = embedded_counters(part1, stream.catalog_path, tmp_path / "emb1")
    plane.stop()
    expected_all, plane = embedded_counters(stream.requests, stream.catalog_path, tmp_path / "emb2")
    plane.stop()
    assert expected_part1 != expected_all

    buffer = KafkaBuffer(KafkaBufferConfig(kafka_broker.bootstrap, topic=events_topic))
    counters = CounterStream(kafka_broker.bootstrap, catalog, topic=counters_topic)
    work = tmp_path / "flink"

    def job() -> engines.ManagedProcess:
        return engines.flink_job(
            work,
            kafka_broker.bootstrap,
            events_topic=events_topic,
            counters_topic=counters_topic,
            catalog=stream.catalog_path,
            checkpoint_interval_ms=500,
        )

    first = job()
    second = job()
    try:
        for kind, body in part1:
            buffer.append_sync(kind, now_us(), body)
        part1_ends = _end_offsets(kafka_broker.bootstrap, events_topic, 3)
        first.start()
        counters.start()
        _wait(
            lambda: published_counters(counters) == expected_part1,
            180,
            "part 1 counters",
            first,
            lambda: _differences(counters, expected_part1, work),
        )
        # A checkpoint triggered after part 1 was counted holds part 1's state and offsets.
        seen_at = max(engines.completed_checkpoints(work), default=0)
        _wait(
            lambda: max(engines.completed_checkpoints(work), default=0) >= seen_at + 2,
            60,
            "a checkpoint after part 1",
            first,
        )

        # Half of part 2 while the job runs, then a crash in the middle of counting it;
        # the other half arrives while no job is running.
        mid = len(part2) // 2
        for kind, body in part2[:mid]:
            buffer.append_sync(kind, now_us(), body)
            time.sleep(0.1)
        first.kill()
        for kind, body in part2[mid:]:
            buffer.append_sync(kind, now_us(), body)
        assert published_counters(counters) != expected_all

        # Remove part 1 from the topic: only the checkpoint still knows it, so the
        # restarted job can only be exact if it resumed from that checkpoint.
        admin = AdminClient({"bootstrap.servers": kafka_broker.bootstrap})
        for future in admin.delete_records(part1_ends).values():
            future.result(timeout=30)

        second.start()
        _wait(lambda: "restoring from" in second.output(), 120, "the restore", second)
        _wait(
            lambda: published_counters(counters) == expected_all,
            180,
            "all counters",
            second,
            lambda: _differences(counters, expected_all, work),
        )
    finally:
        counters.stop()
        first.kill()
        second.kill()
        buffer.close(timeout=5)

    published = published_counters(counters)
    assert published == expected_all
    assert {type(v) for v in published.values()} == {type(v) for v in expected_all.values()}
