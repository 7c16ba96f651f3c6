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
from meterplane.core.errors import ConfigError
from meterplane.core.settings import Settings
from meterplane.core.storage import ChdbEngine, migrate
from meterplane.core.threads import NamedThread
from meterplane.entitlements.decide import Decider
from meterplane.ingest.buffer import Frame, LocalLog

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


class CatalogWatcher:
    """Puts a catalog file in force again whenever it changes, without a restart.

    Polls the file's identity (inode, size, modification time) every ``interval_s``; a
    changed file is parsed whole and only a valid one replaces the catalog in force. A
    file that does not parse is logged once, naming the problem, and the catalog in force
    stays (nothing counted or decided so far is touched); the next valid version is
    picked up as usual. Replacing the file by rename (what editors, ``kubectl``'s
    ConfigMap volumes and the sync agent do) and rewriting it in place both count.
    """

    def __init__(self, path: Path, holder: CatalogHolder, interval_s: float = 2.0) -> None:
        self.path = path
        self.holder = holder
        self.interval_s = interval_s
        self.reloads = 0  # catalogs put in force from the file (tests and logs read this)
        self.last_error: str | None = None
        self._seen = self._identity()
        self._stop = threading.Event()
        self._thread = NamedThread(target=self._run, name="catalog-watch", daemon=True)

    def _identity(self) -> tuple[int, int, int] | None:
        try:
            st = self.path.stat()
        except OSError:
            return None  # gone for now (mid-rename): keep what is in force
        return st.st_ino, st.st_size, st.st_mtime_ns

    def start(self) -> CatalogWatcher:
        """Start polling in a daemon thread."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop polling."""
        self._stop.set()
        self._thread.join(timeout=10)

    def poll(self) -> bool:
        """Check once; True if a new catalog was put in force."""
        now = self._identity()
        if now is None or now == self._seen:
            return False
        self._seen = now
        try:
            catalog = load_catalog(self.path)
        except ConfigError as err:
            self.last_error = str(err)
            log.error("catalog not reloaded, the one in force stays: %s", err)
            return False
        self.holder.set(catalog)
        self.reloads += 1
        self.last_error = None
        log.info("catalog reloaded from %s", self.path)
        return True

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.poll()
            except Exception:  # the watcher must keep watching, whatever one poll hit
                log.exception("catalog watch: poll failed")


class LogBuffer:
    """``DurableBuffer`` over the local log."""

    def __init__(self, log_: LocalLog, aggregator: Aggregator) -> None:
        self._log = log_
        self._aggregator = aggregator

    async def append(
        self, kind: int, received_us: int, body: bytes, items: Sequence[Any] | None = None
    ) -> int:
        end = self._log.write(kind, received_us, body)
        # before it can be read: saves reading the frame back (and a decode where needed)
        self._aggregator.offer(Frame.ending_at(end, kind, received_us, body), items)
        del items  # not held across the wait (see ``Ingest``)
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
            lateness_days=settings.lateness_days,
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
