"""The entitlement side of production: counters kept current from the counters topic.

The Flink job publishes every changed counter to a compacted topic (see
``meterplane.kafka.records``). :class:`CounterStream` reads that topic from the beginning
on start (compaction keeps it about as small as the set of live counters), which rebuilds
the whole state after any restart, then keeps tailing it. The job tombstones a period's
key once the period is final (it ended longer ago than the lateness window and a day);
until compaction removes it, the topic still holds its value. The book keeps only the
periods a check can still ask about: it leaves final ones out, and skips tombstones.
Values land in a :class:`~meterplane.core.counters.CounterBook`, so checks go through
the same ``Decider`` as the embedded path and give the same decisions for the same
counters.

Each replica reads all partitions itself (``assign``, no consumer group): every replica
needs every counter, and nothing is committed, so a restart always replays from offset 0.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

from meterplane.core.catalog import Catalog
from meterplane.core.counters import Counter, CounterBook, Number, settle_before
from meterplane.core.threads import NamedThread
from meterplane.core.timeutil import US_PER_S, now_us
from meterplane.kafka.records import CounterRecord, decode_counter

log = logging.getLogger(__name__)
SWEEP_INTERVAL_US = 3_600 * US_PER_S


class PublishedValue(Counter):
    """A counter whose value was computed elsewhere (by the Flink job) and published."""

    kind = "PUBLISHED"
    __slots__ = ("v", "version")

    def __init__(self, v: Number | None, version: int) -> None:
        self.v = v
        self.version = version

    def value(self) -> Number | None:
        return self.v

    def state(self) -> list[Any]:
        return [self.v, self.version]


class CounterStream:
    """Tails the counters topic into a ``CounterBook`` (one thread)."""

    def __init__(
        self,
        bootstrap: str,
        catalog: Catalog,
        topic: str = "counters",
        extra_config: dict[str, Any] | None = None,
        lateness_days: float = 35.0,
        clock: Callable[[], int] = now_us,
    ) -> None:
        self.topic = topic
        self.book = CounterBook(catalog)
        self.lateness_us = int(lateness_days * 86_400 * US_PER_S)
        self._clock = clock
        self._final_swept = 0  # clock reading of the last sweep of final periods (µs)
        self._consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                # No offsets are committed (every replica replays the topic), but
                # librdkafka requires a group id to be set.
                "group.id": "meterplane-entitlements",
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
                "enable.partition.eof": True,
                "fetch.wait.max.ms": 50,
                **(extra_config or {}),
            }
        )
        self._caught_up = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._listeners: list[Callable[[CounterRecord], None]] = []
        self.applied = 0
        self.stale = 0
        self.final = 0  # records of periods no check asks about any more, left out
        self.error: BaseException | None = None

    def on_record(self, fn: Callable[[CounterRecord], None]) -> None:
        """Call ``fn`` (on the stream thread) for each record applied."""
        self._listeners.append(fn)

    def start(self, timeout: float = 60.0) -> None:
        """Assign every partition from the beginning and start tailing."""
        metadata = self._consumer.list_topics(self.topic, timeout=timeout)
        described = metadata.topics.get(self.topic)
        if described is None or described.error is not None or not described.partitions:
            raise RuntimeError(f"counters topic {self.topic!r} is not available")
        parts = [TopicPartition(self.topic, p, OFFSET_BEGINNING) for p in described.partitions]
        self._pending_eof = {p.partition for p in parts}
        self._consumer.assign(parts)
        self._thread = NamedThread(target=self._run, name="counter-stream", daemon=True)
        self._thread.start()

    def wait_caught_up(self, timeout: float) -> bool:
        """Block until the topic has been read up to its end once (state rebuilt)."""
        return self._caught_up.wait(timeout)

    def ready(self) -> bool:
        """Whether the state has been rebuilt and the stream is healthy."""
        return self._caught_up.is_set() and self.error is None

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                messages = self._consumer.consume(num_messages=10_000, timeout=0.1)
                for message in messages:
                    err = message.error()
                    if err is not None:
                        if err.code() == KafkaError._PARTITION_EOF:
                            self._pending_eof.discard(message.partition())
                            if not self._pending_eof:
                                self._caught_up.set()
                            continue
                        log.warning("counters topic: %s", err)
                        continue
                    value = message.value()
                    if value is None:
                        continue  # a tombstone: nothing to apply
                    self.apply(decode_counter(value))
                self._sweep()
        except BaseException as err:  # the thread must report, not vanish
            self.error = err
            log.exception("counter stream stopped")

    def _final_before(self) -> int:
        """Periods that ended before this instant are final and past: no check asks about
        them, and the book need not hold them (a topic read from offset 0 replays every
        period ever published)."""
        return settle_before(self._clock(), self.lateness_us)

    def _sweep(self) -> None:
        """Once an hour, drop the counters of periods that have become final since."""
        now = self._clock()
        if now - self._final_swept < SWEEP_INTERVAL_US:
            return
        self._final_swept = now
        self.book.retire(self._final_before())

    def apply(self, record: CounterRecord) -> bool:
        """Apply one published counter unless a newer version is already in place, or its
        period is final and past (``_final_before``)."""
        if record.period_end is not None and record.period_end <= self._final_before():
            self.final += 1
            return False
        ck = (record.customer_id, record.feature_id, record.period_start, record.resource_id)
        book = self.book
        current = book.counters.get(ck)
        if isinstance(current, PublishedValue) and current.version >= record.version:
            self.stale += 1
            return False
        book.counters[ck] = PublishedValue(record.value, record.version)
        book.period_end[ck] = record.period_end
        self.applied += 1
        for fn in self._listeners:
            fn(record)
        return True

    def value(
        self, customer: str, feature: str, period_start: int, resource: str = ""
    ) -> Number | None:
        """The current value of one counter (None: nothing counted)."""
        return self.book.value(customer, feature, period_start, resource)

    def wait_for(
        self, predicate: Callable[[], bool], timeout: float, interval: float = 0.01
    ) -> bool:
        """Poll ``predicate`` until it holds or ``timeout`` passes (tests, benchmarks)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return True
            time.sleep(interval)
        return predicate()

    def stop(self) -> None:
        """Stop tailing and close the consumer."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._consumer.close()
