"""Recompute counters from raw events and compare them with the live ones.

Raw rows are the source of truth (DESIGN.md section 4: the raw store keeps exactly one
copy per identity). Recomputing uses the same ``CounterBook`` as the live path, so any
difference is drift: a counter that a crash, a late duplicate beyond the dedup window or
a catalog change left wrong. Sources are iterables of Arrow tables with the ``events``
columns, so hot (ClickHouse) and cold (archived Parquet) chain into one pass.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import msgspec
import pyarrow as pa

from meterplane.core.catalog import Catalog
from meterplane.core.counters import CounterBook, CounterKey, Number, Outcome
from meterplane.core.model import Event, Usage
from meterplane.core.storage import SqlEngine

EVENT_COLUMNS = (
    "customer_id, idempotency_key, kind, name, toUnixTimestamp64Micro(timestamp) AS ts, "
    "resource_id, payload, log_pos"
)
_event = msgspec.json.Decoder(Event)
_usage = msgspec.json.Decoder(Usage)


def hot_batches(
    engine: SqlEngine, upto_pos: int, rows_per_batch: int = 250_000
) -> Iterator[pa.Table]:
    """The hot store's rows below ``upto_pos`` (one copy per identity), month by month."""
    parts = engine.query_arrow(
        f"SELECT DISTINCT toYYYYMM(timestamp) AS m FROM events WHERE log_pos < {int(upto_pos)} "
        "ORDER BY m"
    )
    months = parts.column("m").to_pylist() if parts.num_columns else []
    for month in months:
        table = engine.query_arrow(
            f"SELECT {EVENT_COLUMNS} FROM events FINAL "
            f"WHERE toYYYYMM(timestamp) = {int(month)} AND log_pos < {int(upto_pos)}"
        )
        yield from table.to_batches(rows_per_batch)


def recompute(
    catalog: Catalog,
    sources: Iterable[pa.Table | pa.RecordBatch],
    progress: Callable[[int], None] | None = None,
) -> tuple[CounterBook, int]:
    """Counters recomputed from raw rows; returns (book, rows applied). An identity seen in
    an earlier source (hot is chained first) is not counted again."""
    book = CounterBook(catalog)
    seen: set[tuple[str, str]] = set()
    out = Outcome()
    applied = 0
    for table in sources:
        cols = table.to_pydict()
        for customer, key, kind, name, ts, resource, payload in zip(
            cols["customer_id"],
            cols["idempotency_key"],
            cols["kind"],
            cols["name"],
            cols["ts"],
            cols["resource_id"],
            cols["payload"],
            strict=True,
        ):
            ident = (customer, key)
            if ident in seen:
                continue
            seen.add(ident)
            if kind == "event":
                ev = _event.decode(payload)
                book.apply_event(customer, name, key, ts, ev.dimensions, resource, out)
            else:
                u = _usage.decode(payload)
                book.apply_usage(
                    customer, name, key, ts, u.value, u.updateBehavior == "SET", resource, out
                )
            applied += 1
        if progress is not None:
            progress(table.num_rows)
    return book, applied


@dataclass(frozen=True)
class Drift:
    """One counter whose live value differs from the recomputed one."""

    key: CounterKey
    live: Number | None
    rebuilt: Number | None


def retired_values(engine: SqlEngine, before: int) -> dict[CounterKey, Number | None]:
    """The stored values of the counters of periods that ended at or before ``before``:
    those a checkpoint may leave out once retired (``CounterBook.retire``)."""
    if not before:
        return {}
    table = engine.query_arrow(
        "SELECT customer_id, feature_id, toUnixTimestamp64Micro(period_start) AS ps, "
        "resource_id, value FROM counters FINAL WHERE period_end IS NOT NULL AND "
        f"toUnixTimestamp64Micro(assumeNotNull(period_end)) <= {int(before)}"
    )
    if not table.num_rows:
        return {}
    cols = [table.column(n).to_pylist() for n in ("customer_id", "feature_id", "ps", "resource_id")]
    return dict(zip(zip(*cols, strict=True), table.column("value").to_pylist(), strict=True))


def compare(
    live: CounterBook, rebuilt: CounterBook, retired: dict[CounterKey, Number | None] | None = None
) -> list[Drift]:
    """Every counter that differs (exactly: both sides use the same exact arithmetic). A
    counter the live book has retired is compared by its stored value (``retired``)."""
    retired = retired or {}
    keys = set(live.counters) | set(rebuilt.counters)
    out = []
    for key in sorted(keys):
        a = live.counters.get(key)
        b = rebuilt.counters.get(key)
        va = retired.get(key) if a is None else a.value()
        vb = None if b is None else b.value()
        if va != vb:
            out.append(Drift(key, va, vb))
    return out
