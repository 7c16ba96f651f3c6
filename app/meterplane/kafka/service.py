"""The production HTTP services over Kafka: ``meterplane ingest`` and ``meterplane entitlements``.

- ingest: the public API with the Kafka producer as its durable buffer (202 only after
  every record of the batch is acknowledged by all in-sync replicas). It also tails the
  counters topic, so an ingest replica answers checks like an entitlements replica.
- entitlements: checks only, from the counters topic (rebuilt from offset 0 on every
  start; ``/readyz`` is 503 until that replay has reached the end of the topic). Batches
  sent to it are refused with 503 and a message naming the ingest service.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from meterplane.core.catalog import DEFAULT_CATALOG, load_catalog
from meterplane.core.errors import BufferUnavailable, ConfigError
from meterplane.core.settings import Settings
from meterplane.entitlements.decide import Decider
from meterplane.http.app import create_app
from meterplane.http.server import run_http
from meterplane.kafka.buffer import KafkaBuffer, KafkaBufferConfig
from meterplane.kafka.counters import CounterStream
from meterplane.plane import CatalogHolder, CatalogWatcher

log = logging.getLogger(__name__)


class ChecksOnly:
    """``DurableBuffer`` of an entitlements replica: it stores nothing."""

    async def append(
        self, kind: int, received_us: int, body: bytes, items: Sequence[Any] | None = None
    ) -> int:
        """Refuse: this replica answers checks; batches go to the ingest service."""
        raise BufferUnavailable(
            "this replica answers entitlement checks only; send batches to the ingest service",
            retry_after_s=5,
        )

    def ready(self) -> bool:
        """Always: readiness comes from the counter stream."""
        return True


def add_kafka_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags shared by the Kafka-backed services."""
    parser.add_argument("--catalog", type=Path, help="catalog file (METERPLANE_CATALOG)")
    parser.add_argument(
        "--kafka-bootstrap", dest="kafka_bootstrap", help="Kafka (METERPLANE_KAFKA_BOOTSTRAP)"
    )
    parser.add_argument("--events-topic", default="events", help="events topic (ingest)")
    parser.add_argument("--counters-topic", default="counters", help="compacted counters topic")
    parser.add_argument(
        "--delivery-timeout",
        type=float,
        default=10.0,
        help="seconds a batch may wait for Kafka's acknowledgements before 503",
    )


def _bootstrap(settings: Settings) -> str:
    if not settings.kafka_bootstrap:
        raise ConfigError("METERPLANE_KAFKA_BOOTSTRAP: required for the Kafka-backed services")
    return settings.kafka_bootstrap


def run_service(settings: Settings, args: argparse.Namespace, *, ingest: bool) -> int:
    """Run ``ingest`` (ingest=True) or ``entitlements`` until SIGINT/SIGTERM."""
    bootstrap = _bootstrap(settings)
    catalog = CatalogHolder(load_catalog(settings.catalog))
    stream = CounterStream(
        bootstrap, catalog.get(), topic=args.counters_topic, lateness_days=settings.lateness_days
    )
    catalog.subscribe(stream.book.set_catalog)
    stream.start()
    watcher = CatalogWatcher(settings.catalog or DEFAULT_CATALOG, catalog).start()
    buffer: KafkaBuffer | ChecksOnly
    if ingest:
        buffer = KafkaBuffer(
            KafkaBufferConfig(
                bootstrap, topic=args.events_topic, delivery_timeout_s=args.delivery_timeout
            )
        )
    else:
        buffer = ChecksOnly()

    def ready() -> bool:
        return stream.ready() and buffer.ready()

    try:
        app = create_app(
            buffer,
            Decider(catalog.get, stream.book),
            settings.api_keys,
            max_body_bytes=settings.max_body_bytes,
            lateness_days=settings.lateness_days,
            ready=ready,
        )
        run_http(app, settings)
    finally:
        watcher.stop()
        if isinstance(buffer, KafkaBuffer):
            buffer.close()
        stream.stop()
    return 0
