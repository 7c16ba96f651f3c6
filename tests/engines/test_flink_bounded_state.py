"""The job's state is bounded: identities by the dedup window (keyed state with TTL),
counters by the lateness window (past periods retired). One job serves both tests."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
import pytest

from meterplane.core.catalog import load_catalog
from meterplane.core.counters import SETTLE_MARGIN_US
from meterplane.core.periods import period_bounds
from meterplane.core.timeutil import now_us
from meterplane.kafka.buffer import KafkaBuffer, KafkaBufferConfig
from meterplane.kafka.counters import CounterStream
from meterplane.kafka.records import KEY_SEP, KIND_EVENTS, counter_key, decode_counter
from meterplane.testing import engines
from meterplane_flink.checkpoints import latest_checkpoint

pytestmark = [pytest.mark.engines, pytest.mark.timeout(600)]
WINDOW_S = 5  # the second k1 must arrive within it even on a slow, loaded machine
CATALOG = load_catalog(None)


def _batch(customer: str, *events: tuple[str, int | None]) -> bytes:
    """Events of ``api_call`` by idempotency key, with a timestamp (µs) or none."""
    items: list[dict[str, Any]] = []
    for key, ts in events:
        item: dict[str, Any] = {
            "customerId": customer,
            "eventName": "api_call",
            "idempotencyKey": key,
        }
        if ts is not None:
            item["timestamp"] = dt.datetime.fromtimestamp(ts / 1e6, dt.UTC).isoformat()
        items.append(item)
    return msgspec.json.encode({"events": items})


def _period(customer: str, ts: int) -> tuple[int, int]:
    reset, anchor = CATALOG.period_spec(customer, "api-calls")
    start, end = period_bounds(reset, anchor, ts)
    assert end is not None
    return start, end


@dataclass
class Pipeline:
    job: engines.ManagedProcess
    work_dir: Path
    broker: engines.KafkaBroker
    counters_topic: str
    buffer: KafkaBuffer
    counters: CounterStream

    def send(self, body: bytes, received_us: int | None = None) -> None:
        self.buffer.append_sync(KIND_EVENTS, now_us() if received_us is None else received_us, body)

    def wait_for(self, customer: str, start: int, expected: int) -> None:
        deadline = time.monotonic() + 120
        while (value := self.counters.value(customer, "api-calls", start)) != expected:
            assert self.job.running, self.job.output()[-3000:]
            assert time.monotonic() < deadline, f"api-calls is {value}, expected {expected}"
            time.sleep(0.05)

    def published(self, key: bytes) -> list[bytes | None]:
        """Every value published under ``key`` so far, in order (None: a tombstone)."""
        return [v for k, v in self.broker.read_topic(self.counters_topic) if k == key]

    def checkpointed_state(self) -> bytes:
        """The bytes of a checkpoint completed after this call: the job's keyed state
        (full snapshots of the hashmap backend, uncompressed) as of now or later."""

        def newest() -> int:
            return max(engines.completed_checkpoints(self.work_dir), default=0)

        # the checkpoint in flight now may have passed the operator already: one more
        wanted = newest() + 2
        deadline = time.monotonic() + 60
        while newest() < wanted:
            assert self.job.running, self.job.output()[-3000:]
            assert time.monotonic() < deadline, "no checkpoint completed within 60 s"
            time.sleep(0.1)
        latest = latest_checkpoint(self.work_dir / "checkpoints")
        assert latest is not None
        return b"".join(f.read_bytes() for f in sorted(latest.iterdir()) if f.is_file())


@pytest.fixture(scope="module")
def pipeline(
    kafka_broker: engines.KafkaBroker, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Pipeline]:
    """The job with a 5 s dedup window and no lateness window (past periods are final a
    day after they end), the buffer that feeds it and a stream of what it publishes."""
    events_topic, counters_topic = "bounded-state-events", "bounded-state-counters"
    kafka_broker.create_topic(events_topic, partitions=2)
    kafka_broker.create_topic(counters_topic, partitions=2, config={"cleanup.policy": "compact"})
    work_dir = tmp_path_factory.mktemp("flink")
    job = engines.flink_job(
        work_dir,
        kafka_broker.bootstrap,
        events_topic=events_topic,
        counters_topic=counters_topic,
        mini_batch_ms=50,
        extra_args=["--dedup-window-s", str(WINDOW_S), "--lateness-days", "0"],
    )
    buffer = KafkaBuffer(KafkaBufferConfig(kafka_broker.bootstrap, topic=events_topic))
    # the stream keeps periods for 35 days: it shows the retired period's published value
    counters = CounterStream(kafka_broker.bootstrap, CATALOG, topic=counters_topic)
    job.start()
    counters.start()
    try:
        yield Pipeline(job, work_dir, kafka_broker, counters_topic, buffer, counters)
    finally:
        counters.stop()
        job.kill()
        buffer.close(timeout=5)


def test_duplicates_dropped_within_window_and_forgotten_after_it(pipeline: Pipeline) -> None:
    start, _ = _period("acme", now_us())
    pipeline.send(_batch("acme", ("k1", None), ("k2", None)))
    pipeline.wait_for("acme", start, 2)
    pipeline.send(_batch("acme", ("k1", None), ("k3", None)))  # k1 within the window: dropped
    pipeline.wait_for("acme", start, 3)
    time.sleep(WINDOW_S + 1.5)
    # Past the window the identity has expired from state: the streaming path counts
    # it again (the raw store keeps one row, and `rebuild` corrects the counter).
    pipeline.send(_batch("acme", ("k1", None), ("k4", None)))
    pipeline.wait_for("acme", start, 5)


def _state_key(start: int) -> bytes:
    return f"api-calls{KEY_SEP}{start}{KEY_SEP}".encode()


def _assert_retired(pipeline: Pipeline, customer: str, start: int, value: int) -> None:
    """The period's counter has left the job's state, and on the counters topic its last
    value is followed by a tombstone, for compaction (the job may still be sweeping)."""
    key = counter_key(customer, "api-calls", start, "")
    deadline = time.monotonic() + 60
    while (published := pipeline.published(key))[-1:] != [None]:
        assert time.monotonic() < deadline, f"no tombstone after {published}"
    last = published[-2]
    assert last is not None
    assert decode_counter(last).value == value
    held = _state_key(start) in pipeline.checkpointed_state()
    assert not held, "the final past period's counter is still in the job's state"


def test_past_periods_leave_state_and_counts_into_them_are_refused(pipeline: Pipeline) -> None:
    now = now_us()
    period, end = _period("globex", now)
    pipeline.send(_batch("globex", ("p1", None), ("p2", None)))
    pipeline.wait_for("globex", period, 2)
    held = _state_key(period) in pipeline.checkpointed_state()
    assert held, "the period's counter is not in the job's checkpointed state"
    # Received once the period is final (it ended a day and more before): the record's
    # receipt, not the clock, retires it (the clock's wake-up is due only then).
    later = end + SETTLE_MARGIN_US + 2 * 3_600_000_000
    nxt, _ = _period("globex", later)
    pipeline.send(_batch("globex", ("n1", None)), received_us=later)
    pipeline.wait_for("globex", nxt, 1)
    _assert_retired(pipeline, "globex", period, 2)
    # One count for the retired period and one for the next, in one record. Counted
    # into state the job no longer holds, the first would publish a partial value (1)
    # over the true one (2); it is refused instead, and the published value stays.
    pipeline.send(_batch("globex", ("p3", now), ("n2", None)), received_us=later)
    pipeline.wait_for("globex", nxt, 2)
    time.sleep(1)  # the same mini-batch would have published the past period's counter too
    assert pipeline.counters.value("globex", "api-calls", period) == 2


def test_a_customer_who_stops_sending_has_its_past_periods_retired(pipeline: Pipeline) -> None:
    now = now_us()
    # a period that ended more than the settle margin (a day) before now
    past, past_end = _period("initech", now - 2 * SETTLE_MARGIN_US)
    while past_end > now - SETTLE_MARGIN_US:
        past, past_end = _period("initech", past - 1)
    # received while that period was current, and nothing from the customer after it: the
    # clock retires the period (by the record's receipt it was not final yet)
    pipeline.send(_batch("initech", ("q1", None), ("q2", None)), received_us=past_end - 60_000_000)
    pipeline.wait_for("initech", past, 2)
    _assert_retired(pipeline, "initech", past, 2)
