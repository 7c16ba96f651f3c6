"""The job's dedup state is bounded by the dedup window (keyed state with TTL)."""

from __future__ import annotations

import time
from pathlib import Path

import msgspec
import pytest

from meterplane.core.catalog import load_catalog
from meterplane.core.periods import period_bounds
from meterplane.core.timeutil import now_us
from meterplane.kafka.buffer import KafkaBuffer, KafkaBufferConfig
from meterplane.kafka.counters import CounterStream
from meterplane.kafka.records import KIND_EVENTS
from meterplane.testing import engines

pytestmark = [pytest.mark.engines, pytest.mark.timeout(600)]
WINDOW_S = 5  # the second k1 must arrive within it even on a slow, loaded machine


def _batch(*keys: str) -> bytes:
    events = [{"customerId": "acme", "eventName": "api_call", "idempotencyKey": k} for k in keys]
    return msgspec.json.encode({"events": events})


def test_duplicates_dropped_within_window_and_forgotten_after_it(
    kafka_broker: engines.KafkaBroker, tmp_path: Path, topic_name: str
) -> None:
    events_topic, counters_topic = f"{topic_name}-events", f"{topic_name}-counters"
    kafka_broker.create_topic(events_topic, partitions=2)
    kafka_broker.create_topic(counters_topic, partitions=2, config={"cleanup.policy": "compact"})
    catalog = load_catalog(None)
    reset, anchor = catalog.period_spec("acme", "api-calls")
    start, _ = period_bounds(reset, anchor, now_us())
    job = engines.flink_job(
        tmp_path / "flink",
        kafka_broker.bootstrap,
        events_topic=events_topic,
        counters_topic=counters_topic,
        mini_batch_ms=50,
        extra_args=["--dedup-window-s", str(WINDOW_S)],
    )
    buffer = KafkaBuffer(KafkaBufferConfig(kafka_broker.bootstrap, topic=events_topic))
    counters = CounterStream(kafka_broker.bootstrap, catalog, topic=counters_topic)

    def calls() -> object:
        return counters.value("acme", "api-calls", start)

    def send_and_wait(body: bytes, expected: int) -> None:
        buffer.append_sync(KIND_EVENTS, now_us(), body)
        deadline = time.monotonic() + 120
        while calls() != expected:
            assert job.running, job.output()[-3000:]
            assert time.monotonic() < deadline, f"api-calls is {calls()}, expected {expected}"
            time.sleep(0.05)

    job.start()
    counters.start()
    try:
        send_and_wait(_batch("k1", "k2"), 2)
        send_and_wait(_batch("k1", "k3"), 3)  # k1 again within the window: dropped
        time.sleep(WINDOW_S + 1.5)
        # Past the window the identity has expired from state: the streaming path counts
        # it again (the raw store keeps one row, and `rebuild` corrects the counter).
        send_and_wait(_batch("k1", "k4"), 5)
    finally:
        counters.stop()
        job.kill()
        buffer.close(timeout=5)
