"""Running the archiver on a schedule inside ``meterplane serve`` (embedded mode).

It shares the plane's single chdb engine (chdb allows one session per process). A failed
run is logged as one line and counted (``meterplane_archive_failures``); serving goes on
and the next run retries, since a failed run deletes nothing of the unit that failed.
"""

from __future__ import annotations

import logging
import threading

from meterplane.archive.errors import ArchiveError
from meterplane.archive.exporter import Archiver, ArchiveReport
from meterplane.archive.stores import ObjectStore, quiet_sdk_loggers, store_from_settings
from meterplane.core.settings import Settings
from meterplane.core.storage import SqlEngine
from meterplane.core.threads import NamedThread

log = logging.getLogger(__name__)
FIRST_RUN_DELAY_S = 30.0  # let start-up recovery finish before the first export
EMBEDDED_ROWS_PER_PART = 200_000


class ArchiveScheduler:
    """A background thread that runs ``Archiver.run`` every ``interval_s`` seconds."""

    def __init__(
        self,
        archiver: Archiver,
        interval_s: float,
        first_run_delay_s: float = FIRST_RUN_DELAY_S,
    ) -> None:
        self.archiver = archiver
        self.interval_s = interval_s
        self.first_run_delay_s = min(first_run_delay_s, interval_s)
        self.last_report: ArchiveReport | None = None
        self.last_error: ArchiveError | None = None
        self.runs = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        archiver.cancelled = self._stop.is_set

    def start(self) -> None:
        """Start the schedule."""
        self._thread = NamedThread(target=self._loop, name="archiver", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop after the unit in progress (a unit is never left half-deleted)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=300)

    def run_once(self) -> None:
        """One run; its outcome is logged and kept in ``last_report``/``last_error``."""
        try:
            report = self.archiver.run()
        except ArchiveError as err:
            self.last_error = err
            log.error("archive run failed, nothing of the failing unit deleted: %s", err)
        except Exception:  # the schedule must survive anything a run can raise
            log.exception("archive run failed")
        else:
            self.last_report, self.last_error = report, None
            log.log(logging.INFO if report.units else logging.DEBUG, "%s", report.summary())
        finally:
            self.runs += 1

    def _loop(self) -> None:
        delay = self.first_run_delay_s
        while not self._stop.wait(delay):
            self.run_once()
            delay = self.interval_s


def start_archiver(
    engine: SqlEngine, settings: Settings, store: ObjectStore | None = None
) -> ArchiveScheduler:
    """Start the scheduled archiver for ``serve``. A bad archive setting raises
    ``ConfigError`` (start-up stops with one line, DESIGN 3.1); an unreachable store does
    not stop serving: each run fails loudly in the log until it is reachable."""
    quiet_sdk_loggers()
    store = store or store_from_settings(settings)
    archiver = Archiver(
        engine,
        store,
        hot_retention_days=settings.hot_retention_days,
        lateness_days=settings.lateness_days,
        # Smaller parts than the one-off command: each export holds the plane's single chdb
        # session, and the aggregator's checkpoints wait for it.
        rows_per_part=EMBEDDED_ROWS_PER_PART,
    )
    scheduler = ArchiveScheduler(archiver, settings.archive_interval_s)
    scheduler.start()
    log.info(
        "archiver: every %.0fs to %s, events older than %g days",
        settings.archive_interval_s,
        store.url,
        settings.hot_retention_days,
    )
    return scheduler
