"""``meterplane migrate``: apply pending ClickHouse schema migrations, then exit.

Run by the pre-upgrade Kubernetes Job (against ``METERPLANE_CLICKHOUSE_URL``) before the
new release's workloads start, and usable by hand on an embedded data directory
(``--data-dir``; ``serve`` also migrates at start-up). Migrations are numbered, forward
only and recorded in ``schema_migrations`` once applied (``core/storage.py``): a rerun
applies nothing, and a run interrupted part-way resumes where it stopped — every
statement is idempotent, so one that ran before the interruption is harmless to repeat.

Exit status: 0 applied or already up to date, 1 the database refused a migration, 2 a bad
setting.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Mapping, Sequence
from typing import Any

import pyarrow as pa

from meterplane.commands._common import add_data_dir, guarded, settings_from
from meterplane.core.storage import DATABASE, ChdbEngine, SqlEngine, migrate, to_arrow


class ClickHouseServerEngine:
    """``SqlEngine`` over a ClickHouse server (clickhouse-connect, DSN URL).

    Connects once to create the ``meterplane`` database, then works inside it, as the
    embedded engine does, so migration files never name the database.
    """

    def __init__(self, url: str) -> None:
        import clickhouse_connect  # noqa: PLC0415 - only the production path needs the driver

        bootstrap: Any = clickhouse_connect.get_client(dsn=url)
        try:
            bootstrap.command(f"CREATE DATABASE IF NOT EXISTS {DATABASE}")
        finally:
            bootstrap.close()
        self._client: Any = clickhouse_connect.get_client(dsn=url, database=DATABASE)

    def execute(self, sql: str) -> None:
        self._client.command(sql)

    def query_arrow(self, sql: str) -> pa.Table:
        table: pa.Table = self._client.query_arrow(sql)
        return table

    def insert(self, table: str, columns: Mapping[str, Sequence[Any]]) -> None:
        self._client.insert_arrow(table, to_arrow(columns))

    def close(self) -> None:
        """Close the connection pool."""
        self._client.close()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``--data-dir`` (embedded), ``--clickhouse-url`` (server) and ``--json``."""
    add_data_dir(parser)
    parser.add_argument(
        "--clickhouse-url",
        dest="clickhouse_url",
        help="ClickHouse server DSN (METERPLANE_CLICKHOUSE_URL); default: the data directory",
    )
    parser.add_argument(
        "--wait",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="keep retrying an unreachable server this long (the Job may start first)",
    )
    parser.add_argument("--json", action="store_true", help='print {"applied": [...]}')


def connect_server(url: str, wait_s: float) -> ClickHouseServerEngine:
    """Connect, retrying for up to ``wait_s`` while the server is still coming up."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            return ClickHouseServerEngine(url)
        except Exception:  # the driver raises its own errors for refused and reset
            if time.monotonic() >= deadline:
                raise
            time.sleep(min(5.0, max(0.1, deadline - time.monotonic())))


def _apply(engine: SqlEngine, target: str, as_json: bool) -> int:
    try:
        applied = migrate(engine)
    except Exception as exc:  # any database refusal ends the Job with its reason
        print(f"meterplane migrate: {target}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    if as_json:
        print(json.dumps({"target": target, "applied": applied}))
    elif applied:
        print(f"{target}: applied migrations {', '.join(map(str, applied))}")
    else:
        print(f"{target}: up to date")
    return 0


def run(args: argparse.Namespace) -> int:
    """Migrate the server named by the URL, else the embedded engine in the data directory."""

    def go() -> int:
        settings = settings_from(args)
        if settings.clickhouse_url:
            try:
                server = connect_server(settings.clickhouse_url, args.wait)
            except Exception as exc:  # unreachable after the wait: one line, exit 1
                print(f"meterplane migrate: clickhouse server: {exc}", file=sys.stderr)
                return 1
            try:
                return _apply(server, "clickhouse server", args.json)
            finally:
                server.close()
        embedded = ChdbEngine(settings.data_dir / "chdb")
        try:
            return _apply(embedded, str(settings.data_dir), args.json)
        finally:
            embedded.close()

    return guarded(go)
