"""Storage of raw events and counters with ClickHouse SQL (DESIGN.md section 5).

The same SQL runs on chdb (the engine in-process, embedded mode) and on a ClickHouse
server through clickhouse-connect (production); both sit behind ``SqlEngine``. Schema
changes are numbered files in ``migrations/``, applied in order, each recorded in
``schema_migrations`` after it succeeds; every statement is idempotent (IF NOT EXISTS), so
a run interrupted between applying and recording is simply applied again.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import pyarrow as pa

from meterplane.core.timeutil import now_us

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
DATABASE = "meterplane"


# Column lists of the tables above, in insert order: every writer uses these.
EVENT_COLUMNS = (
    "customer_id",
    "idempotency_key",
    "kind",
    "name",
    "timestamp",
    "ingested_at",
    "resource_id",
    "payload",
    "log_pos",
)
COUNTER_COLUMNS = (
    "customer_id",
    "feature_id",
    "period_start",
    "resource_id",
    "period_end",
    "value",
    "updated_at",
    "version",
)


class SqlEngine(Protocol):
    """What storage needs from a ClickHouse engine."""

    def execute(self, sql: str) -> None:
        """Run a statement that returns nothing."""

    def query_arrow(self, sql: str) -> pa.Table:
        """Run a query and return its result as an Arrow table."""

    def insert(self, table: str, columns: Mapping[str, Sequence[Any]]) -> None:
        """Insert rows given column-wise (names map to equal-length sequences)."""


# The embedded plane's inserts share two cores with ingest. One thread per insert, and no
# merge of the new block on insert (readers use FINAL; a block holds one row per identity):
# 200,000 raw rows took 1.64 µs of CPU each with the defaults, 1.12 with these (medians of
# four alternated rounds, chdb's Python() reading the aggregator's Arrow columns).
_INSERT_SETTINGS = "optimize_on_insert = 0, max_threads = 1"


class ChdbEngine:
    """ClickHouse in-process (chdb), on a directory. One per process: chdb allows one
    session at a time, and this class serializes calls from the app's threads."""

    def __init__(self, path: Path) -> None:
        from chdb import session  # noqa: PLC0415 - importing chdb loads the engine; only when used

        path.mkdir(parents=True, exist_ok=True)
        self._session: Any = session.Session(str(path))  # type: ignore[no-untyped-call]
        self._lock = threading.Lock()
        # pyarrow imports pandas on its first array conversion (a second or more): pay that
        # at start-up, not in the first checkpoint, where it would stall counting.
        to_arrow({"log_pos": [0]})
        self.execute(f"CREATE DATABASE IF NOT EXISTS {DATABASE}")
        self.execute(f"USE {DATABASE}")

    def execute(self, sql: str) -> None:
        with self._lock:
            self._session.query(sql)

    def query_arrow(self, sql: str) -> pa.Table:
        with self._lock:
            result = self._session.query(sql, "Arrow")
            data = result.bytes()
        if not data:
            return pa.table({})
        return pa.ipc.open_file(pa.py_buffer(data)).read_all()

    def insert(self, table: str, columns: Mapping[str, Sequence[Any]]) -> None:
        names = list(columns)
        if not names or not len(columns[names[0]]):
            return
        frame = to_arrow(columns)  # noqa: F841 - chdb's Python() reads it by name
        with self._lock:
            self._session.query(
                f"INSERT INTO {table} ({', '.join(names)}) SELECT * FROM Python(frame)"
                f" SETTINGS {_INSERT_SETTINGS}"
            )

    def close(self) -> None:
        """Release the session (and chdb's lock on the directory)."""
        with self._lock:
            self._session.close()


# Instants travel as int microseconds (exact) and become Arrow timestamps, which both
# chdb and clickhouse-connect map to DateTime64(6, 'UTC'); None is NULL.
_TIMESTAMP = pa.timestamp("us", tz="UTC")
ARROW_TYPES: dict[str, pa.DataType] = {
    "timestamp": _TIMESTAMP,
    "ingested_at": _TIMESTAMP,
    "period_start": _TIMESTAMP,
    "period_end": _TIMESTAMP,
    "updated_at": _TIMESTAMP,
    "applied_at": _TIMESTAMP,
    "log_pos": pa.uint64(),
    "version": pa.uint64(),
    "value": pa.float64(),
    "payload": pa.binary(),  # JSON bytes as received: no UTF-8 round trip through str
}


def to_arrow(columns: Mapping[str, Sequence[Any]]) -> pa.Table:
    """Column-wise rows as an Arrow table, typed by column name (see ``ARROW_TYPES``);
    a column may already be an Arrow array (of that type)."""
    return pa.table(
        {
            n: v if isinstance(v, pa.Array | pa.ChunkedArray) else pa.array(v, ARROW_TYPES.get(n))
            for n, v in columns.items()
        }
    )


@dataclass(frozen=True)
class Migration:
    """One numbered schema change."""

    version: int
    name: str
    sql: str


def load_migrations(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    """The migrations in ``directory``, ordered by number (``NNNN_name.sql``)."""
    out = []
    for path in sorted(directory.glob("*.sql")):
        number, _, name = path.stem.partition("_")
        out.append(Migration(int(number), name, path.read_text(encoding="utf-8")))
    numbers = [m.version for m in out]
    if numbers != list(range(1, len(out) + 1)):
        raise RuntimeError(f"migrations must be numbered 1..N without gaps, got {numbers}")
    return out


def migrate(engine: SqlEngine, migrations: Iterable[Migration] | None = None) -> list[int]:
    """Apply pending migrations in order; return the numbers applied (empty: up to date)."""
    engine.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations "
        "(version UInt32, name String, applied_at DateTime64(6, 'UTC')) "
        "ENGINE = ReplacingMergeTree ORDER BY version"
    )
    table = engine.query_arrow("SELECT version FROM schema_migrations")
    done = set(table.column(0).to_pylist()) if table.num_columns else set()
    applied = []
    for m in migrations if migrations is not None else load_migrations():  # in order
        if m.version in done:
            continue
        for statement in _statements(m.sql):
            engine.execute(statement)
        engine.insert(
            "schema_migrations",
            {"version": [m.version], "name": [m.name], "applied_at": [now_us()]},
        )
        applied.append(m.version)
    return applied


def _statements(sql: str) -> list[str]:
    lines = [ln for ln in sql.splitlines() if not ln.lstrip().startswith("--")]
    return [s.strip() for s in "\n".join(lines).split(";") if s.strip()]
