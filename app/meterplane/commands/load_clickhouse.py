"""``meterplane load-clickhouse``: raw events and counters from Kafka into ClickHouse.

Production: ``METERPLANE_CLICKHOUSE_URL`` names the server (clickhouse-connect). Without it
the loader writes to chdb under ``--data-dir`` (development, tests). Migrations are
applied first (idempotent), then batches are loaded until SIGINT/SIGTERM.
"""

from __future__ import annotations

import argparse
import signal
from types import FrameType

from meterplane.commands._common import add_data_dir, guarded, settings_from, setup_logging
from meterplane.core.errors import ConfigError
from meterplane.core.storage import ChdbEngine, SqlEngine, migrate
from meterplane.kafka.loader import ClickHouseLoader


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_data_dir(parser)
    parser.add_argument(
        "--kafka-bootstrap", dest="kafka_bootstrap", help="Kafka (METERPLANE_KAFKA_BOOTSTRAP)"
    )
    parser.add_argument(
        "--clickhouse-url", dest="clickhouse_url", help="server (METERPLANE_CLICKHOUSE_URL)"
    )
    parser.add_argument(
        "--replicated",
        action="store_true",
        help="create the database with the Replicated engine (a ClickHouse cluster)",
    )
    parser.add_argument("--events-topic", default="events")
    parser.add_argument("--counters-topic", default="counters")
    parser.add_argument("--batch-rows", type=int, default=100_000, help="rows per insert, at most")
    parser.add_argument(
        "--flush-interval", type=float, default=1.0, help="seconds a batch may wait to fill"
    )


def run(args: argparse.Namespace) -> int:
    def go() -> int:
        settings = settings_from(args)
        setup_logging(settings.log_level)
        if not settings.kafka_bootstrap:
            raise ConfigError("METERPLANE_KAFKA_BOOTSTRAP: required for load-clickhouse")
        engine: SqlEngine
        if settings.clickhouse_url:
            from meterplane.clickhouse.engine import ClickHouseEngine  # noqa: PLC0415

            engine = ClickHouseEngine(settings.clickhouse_url, replicated=args.replicated)
        else:
            engine = ChdbEngine(settings.data_dir / "chdb")
        migrate(engine)
        loader = ClickHouseLoader(
            settings.kafka_bootstrap,
            engine,
            events_topic=args.events_topic,
            counters_topic=args.counters_topic,
            batch_rows=args.batch_rows,
            flush_interval_s=args.flush_interval,
        )

        def stop(_sig: int, _frame: FrameType | None) -> None:
            loader.stop()

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        try:
            loader.run()
        finally:
            loader.close()
            engine.close()
        return 0

    return guarded(go)
