"""The production durable buffer: a Kafka topic behind an idempotent ``acks=all`` producer.

Order of effects for one batch (DESIGN.md section 4, "Ack means durable"):
1. the HTTP layer has validated the whole batch;
2. :func:`meterplane.kafka.records.split_batch` groups its items by customer into records
   keyed by customerId, and each record is handed to librdkafka (``produce``);
3. librdkafka delivers them with ``acks=all`` (every in-sync replica has each record) and
   idempotence (a retried send is never written twice, order per partition is kept);
4. only when the delivery report of *every* record of the batch is a success does
   :meth:`KafkaBuffer.append` return, and only then does the HTTP layer send 202.
Any failed report, a full local queue, or brokers known to be unreachable raises
``BufferUnavailable`` (503 + Retry-After). Records of a failed batch that did reach Kafka
are harmless: the client retries the batch and the duplicates are dropped by identity.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from meterplane.core.errors import BufferUnavailable
from meterplane.core.threads import NamedThread
from meterplane.kafka.records import DEFAULT_MAX_RECORD_BYTES, split_batch

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class KafkaBufferConfig:
    """Settings of the producer-backed buffer (secure, durable defaults)."""

    bootstrap: str
    topic: str = "events"
    compression: str = "lz4"
    linger_ms: int = 5
    # Upper bound on how long a batch may wait for its delivery reports; librdkafka
    # fails a record after this, so a request never hangs longer.
    delivery_timeout_s: float = 10.0
    # Local queue bound: beyond it, new batches get 503 instead of piling up in memory.
    queue_max_kbytes: int = 256 * 1024
    queue_max_messages: int = 100_000
    max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES
    retry_after_s: int = 2
    extra: Mapping[str, Any] = field(default_factory=dict)

    def producer_config(self) -> dict[str, Any]:
        """The librdkafka configuration."""
        config: dict[str, Any] = {
            "bootstrap.servers": self.bootstrap,
            "acks": "all",
            "enable.idempotence": True,
            "max.in.flight.requests.per.connection": 5,
            "compression.type": self.compression,
            "linger.ms": self.linger_ms,
            "batch.size": 1_000_000,
            "message.max.bytes": max(1_000_000, self.max_record_bytes * 2),
            "message.timeout.ms": int(self.delivery_timeout_s * 1000),
            "queue.buffering.max.kbytes": self.queue_max_kbytes,
            "queue.buffering.max.messages": self.queue_max_messages,
            "statistics.interval.ms": 1000,
            "reconnect.backoff.max.ms": 1000,
        }
        config.update(self.extra)
        return config


class _BatchWaiter:
    """Counts the delivery reports of one batch and resolves its waiter once."""

    __slots__ = ("error", "last_offset", "on_done", "pending")

    def __init__(self, pending: int, on_done: Callable[[_BatchWaiter], None]) -> None:
        self.pending = pending
        self.error: KafkaError | None = None
        self.last_offset = -1
        self.on_done = on_done

    def report(self, err: KafkaError | None, msg: Message) -> None:
        # Runs on the poll thread (librdkafka callbacks are served by poll()).
        if err is not None and self.error is None:
            self.error = err
        elif err is None:
            self.last_offset = max(self.last_offset, msg.offset() or 0)
        self.pending -= 1
        if self.pending == 0:
            self.on_done(self)


class KafkaBuffer:
    """``DurableBuffer`` (see ``meterplane.plane``) over a Kafka topic."""

    def __init__(self, config: KafkaBufferConfig) -> None:
        self.config = config
        self._producer = Producer(
            {
                **config.producer_config(),
                "error_cb": self._on_error,
                "stats_cb": self._on_stats,
            }
        )
        self._brokers_up: bool | None = None  # None until the first statistics arrive
        self._fatal: KafkaError | None = None
        self._stop = threading.Event()
        self._poller = NamedThread(target=self._poll_loop, name="kafka-poll", daemon=True)
        self._poller.start()

    # ------------------------------------------------------------------ health

    def _on_error(self, err: KafkaError) -> None:
        if err.fatal():
            self._fatal = err
            log.error("Kafka producer fatal error: %s", err)
        elif err.code() == KafkaError._ALL_BROKERS_DOWN:
            self._brokers_up = False
            log.warning("all Kafka brokers are down: %s", err)

    def _on_stats(self, stats_json: str) -> None:
        stats = json.loads(stats_json)
        brokers = stats.get("brokers", {}).values()
        # Bootstrap entries have nodeid -1; a learned broker in state UP serves produce.
        self._brokers_up = any(b.get("nodeid", -1) >= 0 and b.get("state") == "UP" for b in brokers)

    def _poll_loop(self) -> None:
        while not self._stop.is_set():
            self._producer.poll(0.05)

    def ready(self) -> bool:
        """Whether a batch appended now is expected to be delivered."""
        return (
            self._fatal is None
            and self._brokers_up is not False
            and len(self._producer) < self.config.queue_max_messages
        )

    def _check_available(self, records: int) -> None:
        if self._fatal is not None:
            raise BufferUnavailable(
                f"Kafka producer failed: {self._fatal.str()}", self.config.retry_after_s
            )
        if self._brokers_up is False:
            raise BufferUnavailable("Kafka brokers are unreachable", self.config.retry_after_s)
        if len(self._producer) + records > self.config.queue_max_messages:
            raise BufferUnavailable("Kafka producer queue is full", self.config.retry_after_s)

    # ------------------------------------------------------------------ appending

    def _produce(
        self,
        kind: int,
        received_us: int,
        body: bytes,
        items: Sequence[Any] | None,
        on_done: Callable[[_BatchWaiter], None],
    ) -> _BatchWaiter:
        customers = None if items is None else [item.customerId for item in items]
        records = split_batch(
            kind, received_us, body, self.config.max_record_bytes, customers=customers
        )
        self._check_available(len(records))
        waiter = _BatchWaiter(len(records), on_done)
        topic = self.config.topic
        for key, value in records:
            try:
                self._producer.produce(topic, value, key, on_delivery=waiter.report)
            except BufferError as err:
                # Records already queued are delivered anyway: the client's retry
                # duplicates them, and duplicates are dropped by identity downstream.
                raise BufferUnavailable(
                    "Kafka producer queue is full", self.config.retry_after_s
                ) from err
            except KafkaException as err:
                raise BufferUnavailable(
                    f"Kafka produce failed: {err}", self.config.retry_after_s
                ) from err
        return waiter

    def _result(self, waiter: _BatchWaiter) -> int:
        if waiter.error is not None:
            raise BufferUnavailable(
                f"Kafka did not acknowledge the batch: {waiter.error.str()}",
                self.config.retry_after_s,
            )
        return waiter.last_offset

    async def append(
        self, kind: int, received_us: int, body: bytes, items: Sequence[Any] | None = None
    ) -> int:
        """Produce the batch; return once every record is acknowledged by all in-sync
        replicas (the highest offset written), else raise ``BufferUnavailable``.

        ``items`` are the decoded items (Event/Usage), used only for their customerId."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()

        def finished(_: _BatchWaiter) -> None:
            # A report served at close may outlive its request's loop: nobody waits then.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_resolve, done)

        waiter = self._produce(kind, received_us, body, items, finished)
        del items  # not held across the wait (see ``Ingest``)
        try:
            # librdkafka reports every record within message.timeout.ms; the margin only
            # guards against a stalled poll thread.
            await asyncio.wait_for(done, self.config.delivery_timeout_s + 5)
        except TimeoutError:
            raise BufferUnavailable(
                "no delivery report from Kafka in time", self.config.retry_after_s
            ) from None
        return self._result(waiter)

    def append_sync(
        self, kind: int, received_us: int, body: bytes, items: Sequence[Any] | None = None
    ) -> int:
        """Blocking ``append`` for callers without an event loop (tools, benchmarks)."""
        event = threading.Event()
        waiter = self._produce(kind, received_us, body, items, lambda _: event.set())
        if not event.wait(self.config.delivery_timeout_s + 5):
            raise BufferUnavailable(
                "no delivery report from Kafka in time", self.config.retry_after_s
            )
        return self._result(waiter)

    def close(self, timeout: float = 30.0) -> None:
        """Deliver what is queued (bounded by ``timeout``), stop the poll thread, and shut
        the producer down: one left to the garbage collector keeps its connections and
        threads, and goes on reconnecting to a broker that is gone. What is not delivered
        by the deadline is dropped: it was never acked (acks wait for delivery reports)."""
        if self._stop.is_set():
            return
        deadline = time.monotonic() + timeout
        while len(self._producer) and time.monotonic() < deadline:
            time.sleep(0.05)
        self._stop.set()
        self._poller.join(timeout=5)
        if self._producer.flush(max(0.0, deadline - time.monotonic())):
            self._producer.purge()
            self._producer.flush(0)  # the purged records' (failed) delivery reports
        self._producer.close()


def _resolve(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)
