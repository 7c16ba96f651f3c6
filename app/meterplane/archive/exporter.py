"""The archiver: moves raw events older than the hot retention to the cold tier.

Order of durable effects for each unit (one UTC day, or a hash shard of a large day):
1. export the unit's rows from the hot store (one copy per identity, ``FINAL``);
2. upload them as Parquet under the customer's key (content-addressed key);
3. check the key the store reports for the object;
4. upload the manifest (rows, bytes, SHA-256, key) — this is what makes the part count;
5. verify: read the manifest and the object back from the store and compare size,
   SHA-256 and row count with what was exported;
6. only then delete exactly those rows from the hot store (the unit's rows at or below
   the highest exported log position, after re-counting that they are still the same).
A run that dies anywhere leaves every event hot, or cold, or both (between 4 and 6); the
next run re-exports the same rows to the same key and finishes the job, and readers
count an event present in both tiers once (the hot copy). A failure of the store or the
key stops the run with one line and deletes nothing of the failing unit.

Whole months are dropped (``DROP PARTITION``) once they are empty of live rows and no
accepted late event can land in them any more (month end + lateness window is past).
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc

from meterplane.archive import metrics
from meterplane.archive.errors import VerificationFailed
from meterplane.archive.layout import (
    EVENT_COLUMN_NAMES,
    EVENTS_SCHEMA,
    Manifest,
    part_keys,
    read_parquet,
    sha256_hex,
    to_parquet,
)
from meterplane.archive.stores import JSON_TYPE, PARQUET_TYPE, ObjectStore
from meterplane.core.storage import SqlEngine
from meterplane.core.timeutil import US_PER_S, from_us, iso, now_us, to_us

log = logging.getLogger(__name__)
DAY_US = 86_400 * US_PER_S
STEPS = ("exported", "uploaded", "manifested", "verified", "deleted")


@dataclass(frozen=True)
class Unit:
    """One day of events, or shard ``shard`` of ``shards`` of a day too big for one part."""

    day: dt.date
    shard: int = 0
    shards: int = 1

    def predicate(self) -> str:
        """SQL selecting the unit's rows in ``events``."""
        start = to_us(dt.datetime.combine(self.day, dt.time(), tzinfo=dt.UTC))
        sql = (
            f"timestamp >= fromUnixTimestamp64Micro({start}, 'UTC') "
            f"AND timestamp < fromUnixTimestamp64Micro({start + DAY_US}, 'UTC')"
        )
        if self.shards > 1:
            sql += (
                f" AND cityHash64(customer_id, idempotency_key) % {int(self.shards)} "
                f"= {int(self.shard)}"
            )
        return sql

    def __str__(self) -> str:
        name = self.day.isoformat()
        return name if self.shards == 1 else f"{name} shard {self.shard + 1}/{self.shards}"


@dataclass(frozen=True)
class UnitResult:
    """What one unit became."""

    unit: Unit
    rows: int
    bytes: int
    key: str
    sha256: str


@dataclass
class ArchiveReport:
    """The outcome of one run."""

    cutoff: dt.date
    units: list[UnitResult] = field(default_factory=list)
    dropped_partitions: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def rows(self) -> int:
        """Rows moved to the cold tier."""
        return sum(u.rows for u in self.units)

    @property
    def bytes(self) -> int:
        """Parquet bytes written."""
        return sum(u.bytes for u in self.units)

    def summary(self) -> str:
        """One line for logs and the command's output."""
        rate = self.rows / self.seconds if self.seconds > 0 else 0.0
        return (
            f"archived {self.rows} rows in {len(self.units)} part(s), {self.bytes} bytes, "
            f"events before {self.cutoff.isoformat()}; dropped partitions "
            f"{self.dropped_partitions or 'none'}; {self.seconds:.2f}s ({rate:.0f} rows/s)"
        )


Fault = Callable[[str, Unit], None]


class Archiver:
    """Exports, verifies and only then deletes; see the module docstring for the order."""

    def __init__(
        self,
        engine: SqlEngine,
        store: ObjectStore,
        hot_retention_days: float,
        lateness_days: float = 35.0,
        rows_per_part: int = 1_000_000,
        clock: Callable[[], int] = now_us,
        fault: Fault | None = None,
    ) -> None:
        self.engine = engine
        self.store = store
        self.hot_retention_us = int(hot_retention_days * DAY_US)
        self.lateness_us = int(lateness_days * DAY_US)
        self.rows_per_part = rows_per_part
        self.clock = clock
        # Test seam: called after each step of each unit (e.g. to kill the process there).
        self.fault = fault
        # Checked between units, so a stopping ``serve`` never waits for a whole backlog.
        self.cancelled: Callable[[], bool] = lambda: False

    def cutoff_day(self) -> dt.date:
        """Days strictly before this one are entirely older than the hot retention."""
        return from_us(self.clock() - self.hot_retention_us).date()

    def run(self) -> ArchiveReport:
        """Archive every eligible unit; raise an ``ArchiveError`` at the first failure."""
        started = time.monotonic()
        report = ArchiveReport(self.cutoff_day())
        try:
            self.store.preflight()
            for unit in self.units(report.cutoff):
                if self.cancelled():
                    break
                result = self.archive_unit(unit)
                if result is not None:
                    report.units.append(result)
                    metrics.ROWS.inc(result.rows)
                    metrics.BYTES.inc(result.bytes)
            report.dropped_partitions = self.drop_sealed_partitions(report.cutoff)
        except Exception:
            metrics.FAILURES.inc()
            raise
        report.seconds = time.monotonic() - started
        metrics.LAST_SUCCESS.set(self.clock() / US_PER_S)
        return report

    def units(self, cutoff: dt.date) -> list[Unit]:
        """The units holding hot rows older than ``cutoff``, oldest first."""
        cutoff_us = to_us(dt.datetime.combine(cutoff, dt.time(), tzinfo=dt.UTC))
        table = self.engine.query_arrow(
            "SELECT toDate(timestamp) AS d, count() AS n FROM events "
            f"WHERE timestamp < fromUnixTimestamp64Micro({cutoff_us}, 'UTC') "
            "GROUP BY d ORDER BY d"
        )
        if not table.num_rows:
            return []
        out: list[Unit] = []
        for day, n in zip(
            table.column("d").to_pylist(), table.column("n").to_pylist(), strict=True
        ):
            shards = max(1, math.ceil(n / self.rows_per_part))
            out.extend(Unit(day, i, shards) for i in range(shards))
        return out

    def _step(self, name: str, unit: Unit) -> None:
        if self.fault is not None:
            self.fault(name, unit)

    def archive_unit(self, unit: Unit) -> UnitResult | None:
        """Export, upload, verify, delete one unit; None when it has no rows."""
        rows = self.engine.query_arrow(
            f"SELECT {', '.join(EVENT_COLUMN_NAMES)} FROM events FINAL "
            f"WHERE {unit.predicate()} ORDER BY customer_id, idempotency_key, log_pos"
        )
        if not rows.num_rows:
            return None
        rows = rows.select(list(EVENT_COLUMN_NAMES)).cast(EVENTS_SCHEMA)
        log_pos = rows.column("log_pos")
        min_pos, max_pos = int(pc.min(log_pos).as_py()), int(pc.max(log_pos).as_py())
        data = to_parquet(rows)
        digest = sha256_hex(data)
        data_key, manifest_key = part_keys(unit.day, digest)
        self._step("exported", unit)

        self.store.put(data_key, data, PARQUET_TYPE)
        encryption = self.store.encryption(data_key)
        self._step("uploaded", unit)

        manifest = Manifest(
            day=unit.day.isoformat(),
            object=data_key,
            rows=rows.num_rows,
            size=len(data),
            sha256=digest,
            min_log_pos=min_pos,
            max_log_pos=max_pos,
            encryption=encryption,
            created_at=iso(self.clock()) or "",
        )
        self.store.put(manifest_key, manifest.encode(), JSON_TYPE)
        self.store.encryption(manifest_key)
        self._step("manifested", unit)

        self.verify(manifest_key, manifest)
        self._step("verified", unit)

        self.delete_hot(unit, rows)
        self._step("deleted", unit)
        log.info(
            "archived %s: %d rows, %d bytes -> %s/%s",
            unit,
            rows.num_rows,
            len(data),
            self.store.url,
            data_key,
        )
        return UnitResult(unit, rows.num_rows, len(data), data_key, digest)

    def verify(self, manifest_key: str, expected: Manifest) -> None:
        """Read the manifest and the object back from the store and compare."""
        where = f"{self.store.url}/{manifest_key}"
        stored = Manifest.decode(self.store.get(manifest_key), where)
        if stored != expected:
            raise VerificationFailed(f"{where}: manifest read back differs from the one written")
        data = self.store.get(expected.object)
        where = f"{self.store.url}/{expected.object}"
        if len(data) != expected.size or sha256_hex(data) != expected.sha256:
            raise VerificationFailed(
                f"{where}: read back {len(data)} bytes with SHA-256 {sha256_hex(data)[:16]}…, "
                f"wrote {expected.size} bytes with {expected.sha256[:16]}…"
            )
        rows = read_parquet(data).metadata.num_rows
        if rows != expected.rows:
            raise VerificationFailed(f"{where}: {rows} rows read back, {expected.rows} written")

    def delete_hot(self, unit: Unit, rows: pa.Table) -> None:
        """Delete exactly the exported rows, after checking they are still exactly those.

        A customer's log positions only grow (embedded: one log; production: all of a
        customer's events are in one Kafka partition, keyed by customer, whose offsets only
        grow). So "the customer's rows of this unit at or below the highest position
        exported for that customer" are the exported rows — plus later copies of the same
        identities, which are duplicates — and never an event that arrived after the export.
        """
        per_customer = rows.group_by("customer_id").aggregate(
            [("log_pos", "max"), ("log_pos", "count")]
        )
        chunks = list(
            _chunks(
                per_customer.column("customer_id").to_pylist(),
                per_customer.column("log_pos_max").to_pylist(),
                per_customer.column("log_pos_count").to_pylist(),
            )
        )
        wheres = []
        for predicate, expected in chunks:
            where = f"{unit.predicate()} AND {predicate}"
            now = self.engine.query_arrow(f"SELECT count() AS n FROM events FINAL WHERE {where}")
            n = now.column("n")[0].as_py()
            if n != expected:
                # Rows appeared or vanished below the exported positions since the export
                # (another writer): keep them all hot; the next run exports the new set.
                raise VerificationFailed(
                    f"hot rows of {unit} changed during export ({expected} exported, {n} now); "
                    "nothing deleted"
                )
            wheres.append(where)
        for where in wheres:
            self.engine.execute(f"DELETE FROM events WHERE {where}")

    def drop_sealed_partitions(self, cutoff: dt.date) -> list[str]:
        """Drop month partitions with no live rows that no late event can reach."""
        parts = self.engine.query_arrow(
            "SELECT DISTINCT partition_id AS p FROM system.parts "
            "WHERE database = currentDatabase() AND table = 'events' AND active"
        )
        if not parts.num_rows:
            return []
        live = self.engine.query_arrow(
            "SELECT _partition_id AS p, count() AS n FROM events GROUP BY p"
        )
        occupied = set(live.column("p").to_pylist()) if live.num_rows else set()
        now = self.clock()
        dropped = []
        for p in sorted(parts.column("p").to_pylist()):
            if p in occupied or len(p) != 6 or not p.isdigit():
                continue
            year, month = int(p[:4]), int(p[4:])
            end = dt.date(year + month // 12, month % 12 + 1, 1)
            end_us = to_us(dt.datetime.combine(end, dt.time(), tzinfo=dt.UTC))
            if end <= cutoff and end_us + self.lateness_us < now:
                self.engine.execute(f"ALTER TABLE events DROP PARTITION ID '{p}'")
                dropped.append(p)
        return dropped


# Each DELETE names its customers and their highest exported positions in the SQL text;
# keep that text well under ClickHouse's default max_query_size (256 KiB).
_MAX_PREDICATE_CHARS = 100_000


def sql_string(value: str) -> str:
    """A ClickHouse string literal."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _chunks(customers: list[str], tops: list[int], counts: list[int]) -> Iterator[tuple[str, int]]:
    """(predicate, rows it should match) for groups of customers."""
    names: list[str] = []
    positions: list[str] = []
    expected = 0
    size = 0

    def flush() -> tuple[str, int]:
        listed = ", ".join(names)
        predicate = (
            f"customer_id IN ({listed}) AND log_pos <= transform(customer_id, [{listed}], "
            f"CAST([{', '.join(positions)}] AS Array(UInt64)), toUInt64(0))"
        )
        return predicate, expected

    for customer, top, count in zip(customers, tops, counts, strict=True):
        literal = sql_string(customer)
        if names and size + 2 * len(literal) > _MAX_PREDICATE_CHARS:
            yield flush()
            names, positions, expected, size = [], [], 0, 0
        names.append(literal)
        positions.append(str(int(top)))
        expected += int(count)
        size += 2 * len(literal) + 24
    if names:
        yield flush()
