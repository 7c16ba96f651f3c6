"""``meterplane sync``: the standalone sync agent (the container in namespace ``shared``).

Reads customer-wide counters from ClickHouse (``METERPLANE_CLICKHOUSE_URL``; without it,
the embedded engine on ``--data-dir``), publishes rollups and lifecycle events to the
control plane, and materializes the synced catalog as files other services read
(``--catalog-out`` / ``METERPLANE_SYNC_CATALOG_OUT``, else ``METERPLANE_CATALOG``, else
``<data dir>/sync/catalog.yaml``; ``governance.json`` with the ingest keys beside it), each
replaced atomically. Listens only on the health/metrics port (``--host``/``--port``).
"""

from __future__ import annotations

import argparse
import logging
import signal
import threading
from collections.abc import Callable
from pathlib import Path
from types import FrameType

from meterplane.commands._common import (
    add_data_dir,
    add_http,
    guarded,
    settings_from,
    setup_logging,
)
from meterplane.core.errors import ConfigError
from meterplane.core.settings import Settings
from meterplane.sync.adapters import ArrowQuery, FileTarget, SqlSource
from meterplane.sync.agent import AgentConfig, SyncAgent
from meterplane.sync.health import HealthServer

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_data_dir(parser)
    add_http(parser)
    parser.add_argument(
        "--catalog-out",
        dest="sync_catalog_out",
        type=Path,
        help="where to write the synced catalog (METERPLANE_SYNC_CATALOG_OUT)",
    )


def _reader(settings: Settings) -> tuple[ArrowQuery, Callable[[], None]]:
    if settings.clickhouse_url:
        from meterplane.sync.clickhouse import ClickHouseReader  # noqa: PLC0415 - prod only

        reader = ClickHouseReader(settings.clickhouse_url)
        return reader, reader.close
    from meterplane.core.storage import ChdbEngine, migrate  # noqa: PLC0415 - loads chdb

    engine = ChdbEngine(settings.data_dir / "chdb")
    migrate(engine)
    return engine, engine.close


def run(args: argparse.Namespace) -> int:
    def go() -> int:
        settings = settings_from(args)
        # Counters come from a database query here, not from memory: read them less often.
        config = AgentConfig.from_settings(settings, read_every_s=2.0)
        setup_logging(settings.log_level)
        reader, close_reader = _reader(settings)
        # METERPLANE_CATALOG names the catalog file the services read; the agent is the one
        # that writes it (on the shared volume) unless told otherwise.
        out = (
            settings.sync_catalog_out
            or settings.catalog
            or settings.data_dir / "sync" / "catalog.yaml"
        )
        agent: SyncAgent | None = None
        health: HealthServer | None = None
        stop = threading.Event()
        try:
            agent = SyncAgent(
                config,
                settings.data_dir / "sync" / "agent.sqlite",
                SqlSource(reader),
                FileTarget(out),
            )
            try:
                health = HealthServer(settings.http_host, settings.http_port, agent.ready)
            except OSError as err:
                where = f"{settings.http_host}:{settings.http_port}"
                raise ConfigError(
                    f"METERPLANE_HTTP_PORT: cannot listen on {where}: {err}"
                ) from None

            def on_signal(signum: int, frame: FrameType | None) -> None:
                stop.set()

            signal.signal(signal.SIGTERM, on_signal)
            signal.signal(signal.SIGINT, on_signal)
            health.start()
            agent.start()
            log.info(
                "health and metrics on %s:%d; catalog -> %s", settings.http_host, health.port, out
            )
            stop.wait()
        finally:
            if agent is not None:
                agent.stop()
            if health is not None:
                health.stop()
            close_reader()
        return 0

    return guarded(go)
