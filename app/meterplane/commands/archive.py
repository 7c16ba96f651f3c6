"""``meterplane archive``: move raw events older than the hot retention to the cold tier,
once: on a data directory while ``serve`` is stopped (``serve`` runs it on a schedule), or
on the ClickHouse server (``METERPLANE_CLICKHOUSE_URL``, the deployed CronJob).

Exit status: 0 when the run completed, 1 when it stopped on the store or the key (one
line on stderr; nothing of the failing unit was deleted), 2 on a bad setting.
"""

from __future__ import annotations

import argparse
import fcntl
import sys

from meterplane.archive.errors import ArchiveError
from meterplane.archive.exporter import Archiver
from meterplane.archive.stores import ObjectStore, quiet_sdk_loggers, store_from_settings
from meterplane.commands._common import add_data_dir, guarded, settings_from, setup_logging
from meterplane.core.errors import ConfigError
from meterplane.core.settings import Settings
from meterplane.core.storage import ChdbEngine, SqlEngine, migrate


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_data_dir(parser)
    parser.add_argument(
        "--url",
        dest="archive_url",
        help="s3://, gs://, az:// (or abfss://container@account...) or file:// bucket and "
        "prefix (METERPLANE_ARCHIVE_URL; default: cold/ in the data directory)",
    )
    parser.add_argument(
        "--kms-key",
        dest="archive_kms_key",
        help="the customer's key: S3 KMS key ARN/id/alias, GCS CryptoKey name, Azure "
        "encryption scope or Key Vault key URI (METERPLANE_ARCHIVE_KMS_KEY)",
    )
    parser.add_argument(
        "--hot-retention-days",
        dest="hot_retention_days",
        type=float,
        help="archive events older than this (METERPLANE_HOT_RETENTION_DAYS)",
    )


def archive_once(settings: Settings) -> int:
    """One archive run; returns the exit status. With ``METERPLANE_CLICKHOUSE_URL`` (the
    deployed CronJob) it runs on the ClickHouse server, else on ``--data-dir``'s chdb."""
    store = store_from_settings(settings)
    if settings.clickhouse_url:
        from meterplane.clickhouse.engine import ClickHouseEngine  # noqa: PLC0415 - prod only

        server = ClickHouseEngine(settings.clickhouse_url)
        try:
            return _archive(server, store, settings)
        finally:
            server.close()
    data_dir = settings.data_dir
    if not (data_dir / "chdb").exists():
        raise ConfigError(f"METERPLANE_DATA_DIR: no data plane at {data_dir}")
    (data_dir / "log").mkdir(exist_ok=True)
    with (data_dir / "log" / "LOCK").open("a") as lock:
        try:
            # The log's lock is serve's (``LocalLog``): holding it proves serve is not
            # running on this directory (chdb would refuse a second session less clearly).
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(
                f"meterplane archive: {data_dir} is in use by a running serve "
                "(which archives on its own schedule); stop it to archive once",
                file=sys.stderr,
            )
            return 1
        engine = ChdbEngine(data_dir / "chdb")
        try:
            migrate(engine)
            return _archive(engine, store, settings)
        finally:
            engine.close()


def _archive(engine: SqlEngine, store: ObjectStore, settings: Settings) -> int:
    try:
        report = Archiver(
            engine,
            store,
            hot_retention_days=settings.hot_retention_days,
            lateness_days=settings.lateness_days,
        ).run()
    except ArchiveError as err:
        # Days archived before the failure stay archived; nothing unverified was deleted.
        print(f"meterplane archive: stopped, unverified days stay hot: {err}", file=sys.stderr)
        return 1
    print(report.summary())
    return 0


def run(args: argparse.Namespace) -> int:
    def go() -> int:
        settings = settings_from(args)
        setup_logging(settings.log_level)
        quiet_sdk_loggers()
        return archive_once(settings)

    return guarded(go)
