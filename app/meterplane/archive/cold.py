"""Reading the cold tier back: Arrow tables with the ``events`` columns, day by day.

Only parts with a manifest count (a data object without one is an interrupted upload whose
rows are still hot), and every object is checked against its manifest (size, SHA-256, row
count) before its rows are used. Parts of the same day may overlap when an archive run
was interrupted and rerun after new rows arrived; within a day each identity is returned
once, the copy with the lowest log position (the first one stored). An event present both
hot and cold is the caller's to resolve: ``rebuild`` chains hot first and skips identities
it has already counted, so the hot copy wins.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import groupby

import pyarrow as pa
import pyarrow.compute as pc

from meterplane.archive.errors import ColdCorrupt
from meterplane.archive.layout import (
    EVENT_COLUMN_NAMES,
    EVENTS_SCHEMA,
    MANIFEST_SUFFIX,
    TABLE_DIR,
    Manifest,
    day_of_key,
    read_parquet,
    sha256_hex,
)
from meterplane.archive.stores import ObjectStore


@dataclass(frozen=True)
class ColdPart:
    """One verified-on-write part of the archive."""

    day: dt.date
    manifest_key: str
    manifest: Manifest


def cold_parts(
    store: ObjectStore, since: dt.date | None = None, until: dt.date | None = None
) -> list[ColdPart]:
    """The parts of the archive (days ``since`` <= day < ``until``), oldest day first."""
    out = []
    for key in store.list(f"{TABLE_DIR}/"):
        day = day_of_key(key)
        if day is None or not key.endswith(MANIFEST_SUFFIX):
            continue
        if (since is not None and day < since) or (until is not None and day >= until):
            continue
        manifest = Manifest.decode(store.get(key), f"{store.url}/{key}")
        out.append(ColdPart(day, key, manifest))
    out.sort(key=lambda p: (p.day, p.manifest_key))
    return out


def read_part(store: ObjectStore, part: ColdPart) -> pa.Table:
    """A part's rows, after checking the object against its manifest."""
    m = part.manifest
    data = store.get(m.object)
    where = f"{store.url}/{m.object}"
    if len(data) != m.size or sha256_hex(data) != m.sha256:
        raise ColdCorrupt(f"{where}: bytes or SHA-256 differ from {part.manifest_key}")
    table = read_parquet(data).read()
    if table.num_rows != m.rows:
        raise ColdCorrupt(f"{where}: {table.num_rows} rows, manifest says {m.rows}")
    return table.select(list(EVENT_COLUMN_NAMES)).cast(EVENTS_SCHEMA)


def first_copy_per_identity(table: pa.Table) -> pa.Table:
    """Keep one row per (customer_id, idempotency_key): the lowest log position."""
    ordered = table.sort_by(
        [("customer_id", "ascending"), ("idempotency_key", "ascending"), ("log_pos", "ascending")]
    )
    customers = ordered.column("customer_id").to_pylist()
    keys = ordered.column("idempotency_key").to_pylist()
    keep = [True] * ordered.num_rows
    for i in range(1, ordered.num_rows):
        if customers[i] == customers[i - 1] and keys[i] == keys[i - 1]:
            keep[i] = False
    return ordered.filter(pa.array(keep))


def cold_batches(
    store: ObjectStore,
    since: dt.date | None = None,
    until: dt.date | None = None,
    upto_pos: int | None = None,
) -> Iterator[pa.Table]:
    """The archive's rows, one table per day, with the ``events`` columns (the ``timestamp``
    and ``ingested_at`` as UTC microsecond timestamps). ``upto_pos`` keeps only rows below
    that log position (as ``rebuild`` does for the hot store)."""
    for _day, group in groupby(cold_parts(store, since, until), key=lambda p: p.day):
        parts = list(group)
        tables = [read_part(store, p) for p in parts]
        table = tables[0] if len(tables) == 1 else first_copy_per_identity(pa.concat_tables(tables))
        if upto_pos is not None:
            table = table.filter(pc.less(table.column("log_pos"), pa.scalar(upto_pos, pa.uint64())))
        if table.num_rows:
            yield table


def cold_row_count(store: ObjectStore) -> int:
    """Rows recorded in the manifests (an upper bound: overlapping parts count twice)."""
    return sum(p.manifest.rows for p in cold_parts(store))


def rebuild_batches(store: ObjectStore, upto_pos: int | None = None) -> Iterator[pa.Table]:
    """``cold_batches`` in the shape ``aggregate.rebuild.recompute`` reads (the event
    time as ``ts``, integer microseconds, like ``rebuild.hot_batches``)."""
    for table in cold_batches(store, upto_pos=upto_pos):
        ts = table.column("timestamp").cast(pa.int64())
        yield pa.table(
            {
                "customer_id": table.column("customer_id"),
                "idempotency_key": table.column("idempotency_key"),
                "kind": table.column("kind"),
                "name": table.column("name"),
                "ts": ts,
                "resource_id": table.column("resource_id"),
                "payload": table.column("payload"),
                "log_pos": table.column("log_pos"),
            }
        )
