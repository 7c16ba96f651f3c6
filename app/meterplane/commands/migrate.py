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

from meterplane.clickhouse.engine import ClickHouseEngine
from meterplane.commands._common import add_data_dir, guarded, settings_from
from meterplane.core.errors import ConfigError
from meterplane.core.storage import ChdbEngine, SqlEngine, migrate


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
    parser.add_argument(
        "--replicated",
        action="store_true",
        help="create the database with the Replicated engine (a ClickHouse cluster), so every "
        "migration reaches every replica",
    )
    parser.add_argument("--json", action="store_true", help='print {"applied": [...]}')


def connect_server(url: str, wait_s: float, *, replicated: bool) -> ClickHouseEngine:
    """Connect, retrying for up to ``wait_s`` while the server is still coming up."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            return ClickHouseEngine(url, replicated=replicated)
        except ConfigError:  # cannot connect (yet)
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
                server = connect_server(
                    settings.clickhouse_url, args.wait, replicated=args.replicated
                )
            except ConfigError as exc:  # unreachable after the wait: one line, exit 1
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
