"""The embedded data plane: log + aggregator + chdb + decisions in one process.

``DurableBuffer`` is the seam between the HTTP layer and whatever makes a batch durable:
the local log here, a Kafka producer in production (``meterplane.kafka``).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

from meterplane.aggregate.aggregator import Aggregator
from meterplane.core.catalog import Catalog, load_catalog
from meterplane.core.settings import Settings
from meterplane.core.storage import ChdbEngine, migrate
from meterplane.entitlements.decide import Decider
from meterplane.ingest.buffer import LocalLog

log = logging.getLogger(__name__)


class DurableBuffer(Protocol):
    """Makes a validated batch durable; ``append`` returns only once it is."""

    async def append(
        self, kind: int, received_us: int, body: bytes, items: Sequence[Any] | None = None
    ) -> int:
        """Store the batch; raise ``BufferUnavailable`` if it cannot be made durable now.

        ``items`` are the batch's already-decoded items: a buffer may hand them on to
        its consumer so that the batch is not decoded twice."""

    def ready(self) -> bool:
        """Whether the buffer can take batches now."""


class CatalogHolder:
    """The current catalog; replaced whole (by the sync agent or a reload), read lock-free."""

    def __init__(self, catalog: Catalog) -> None:
        self._catalog = catalog
        self._listeners: list[Callable[[Catalog], None]] = []
        self._lock = threading.Lock()

    def get(self) -> Catalog:
        """The catalog in force."""
        return self._catalog

    def set(self, catalog: Catalog) -> None:
        """Put a new catalog in force and tell the listeners (e.g. the aggregator)."""
        with self._lock:
            self._catalog = catalog
            for fn in self._listeners:
                fn(catalog)

    def subscribe(self, fn: Callable[[Catalog], None]) -> None:
        """Call ``fn(catalog)`` whenever the catalog changes."""
        self._listeners.append(fn)


class LogBuffer:
    """``DurableBuffer`` over the local log."""

    def __init__(self, log_: LocalLog, aggregator: Aggregator) -> None:
        self._log = log_
        self._aggregator = aggregator

    async def append(
        self, kind: int, received_us: int, body: bytes, items: Sequence[Any] | None = None
    ) -> int:
        end = self._log.write(kind, received_us, body)
        if items is not None:
            self._aggregator.hint(end, items)  # before it can be read: saves a decode
        await self._log.durable(end)
        return end

    def ready(self) -> bool:
        return self._aggregator.error is None and self._log.backlog() <= self._log.max_backlog_bytes


class EmbeddedPlane:
    """Everything ``meterplane serve`` runs, wired together."""

    def __init__(self, settings: Settings, catalog: Catalog | None = None) -> None:
        self.settings = settings
        data = settings.data_dir
        data.mkdir(parents=True, exist_ok=True)
        self.catalog = CatalogHolder(catalog or load_catalog(settings.catalog))
        self.log = LocalLog(data / "log", max_backlog_bytes=settings.max_backlog_bytes)
        self.engine = ChdbEngine(data / "chdb")
        migrate(self.engine)
        self.aggregator = Aggregator(
            self.log,
            self.engine,
            self.catalog.get(),
            data / "state",
            dedup_window_s=settings.dedup_window_s,
            checkpoint_interval_s=settings.checkpoint_interval_s,
        )
        self.catalog.subscribe(self.aggregator.book.set_catalog)
        self.buffer = LogBuffer(self.log, self.aggregator)
        self.decider = Decider(self.catalog.get, self.aggregator.book)

    def start(self) -> None:
        """Recover state and start counting."""
        self.aggregator.start()

    def stop(self) -> None:
        """Count what is durable, checkpoint, release files."""
        self.aggregator.stop()
        self.log.close()
        self.engine.close()

    @property
    def data_dir(self) -> Path:
        """Where this plane keeps its log, state and chdb files."""
        return self.settings.data_dir
