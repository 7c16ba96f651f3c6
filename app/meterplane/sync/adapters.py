"""Where the agent reads counters from and where it puts what it synced.

Sources of customer-wide counter totals (resource ""):
- ``BookSource``: the embedded aggregator's in-memory ``CounterBook`` (``serve``);
- ``SqlSource``: the ``counters`` table through ``SqlEngine`` (ClickHouse server in
  production, chdb on a data directory locally), latest version by ``FINAL``.
Targets of the synced catalog and governance:
- ``EmbeddedTarget``: the running plane's ``CatalogHolder`` and the HTTP API's keys;
- ``FileTarget``: files replaced atomically on a volume the other services read
  (``catalog.yaml`` in the catalog-file shape, ``governance.json`` with the ingest keys).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import pyarrow as pa
import yaml

from meterplane.core.catalog import Catalog
from meterplane.core.counters import CounterBook, Number
from meterplane.core.files import write_atomic
from meterplane.plane import CatalogHolder


@dataclass(frozen=True)
class Total:
    """A customer's total for one feature and period (what a rollup reports)."""

    customer: str
    feature: str
    start: int
    end: int | None
    value: Number


def normalize(v: float) -> Number:
    """Whole floats as ints, so both sources publish identical values (the ``counters``
    table stores Float64; the in-memory book keeps ints for counts)."""
    if isinstance(v, float) and v.is_integer() and abs(v) < 2**53:
        return int(v)
    return v


class CounterSource(Protocol):
    """Customer-wide counter totals."""

    def totals(self, force: bool = False) -> list[Total] | None:
        """Every total, or None when nothing changed since the last call (unless ``force``)."""


class BookSource:
    """Totals from the embedded aggregator's book (read concurrently with counting)."""

    def __init__(self, book: CounterBook) -> None:
        self._book = book
        self._changed = True

    def mark_changed(self) -> None:
        """Called by the aggregator (``on_change``) after each applied batch."""
        self._changed = True

    def totals(self, force: bool = False) -> list[Total] | None:
        if not (self._changed or force):
            return None
        self._changed = False  # before reading: a change during the read is seen next time
        book = self._book
        # list(dict) copies the keys in one step under the GIL, while the aggregator thread
        # may add counters; values are read one by one afterwards.
        keys = list(book.counters)
        out = []
        for ck in keys:
            if ck[3]:
                continue
            counter = book.counters.get(ck)
            if counter is None:
                continue
            value = counter.value()
            if value is None:
                continue
            out.append(Total(ck[0], ck[1], ck[2], book.period_end.get(ck), normalize(value)))
        return out


class ArrowQuery(Protocol):
    """The read side of ``meterplane.core.storage.SqlEngine``: all the agent needs, so its
    ClickHouse user can be read-only."""

    def query_arrow(self, sql: str) -> pa.Table:
        """Run a query and return its result as an Arrow table."""


# Periods that closed longer ago than the lateness window (35 days by default) can no
# longer change: leave them out of every read instead of scanning all history.
CLOSED_HORIZON_DAYS = 40


class SqlSource:
    """Totals from the ``counters`` table (the row with the highest version wins)."""

    def __init__(self, engine: ArrowQuery) -> None:
        self._engine = engine

    def totals(self, force: bool = False) -> list[Total] | None:
        table = self._engine.query_arrow(
            "SELECT customer_id, feature_id, toUnixTimestamp64Micro(period_start) AS ps, "
            "if(isNull(period_end), -1, toUnixTimestamp64Micro(assumeNotNull(period_end))) "
            "AS pe, assumeNotNull(value) AS v FROM counters FINAL "
            "WHERE resource_id = '' AND value IS NOT NULL AND (isNull(period_end) OR "
            f"period_end > now64(6) - INTERVAL {CLOSED_HORIZON_DAYS} DAY)"
        )
        if not table.num_rows:
            return []
        cols = [table.column(n).to_pylist() for n in ("customer_id", "feature_id", "ps", "pe", "v")]
        return [
            Total(c, f, int(s), None if e < 0 else int(e), normalize(v))
            for c, f, s, e, v in zip(*cols, strict=True)
        ]


class KeySink(Protocol):
    """Something that accepts the set of ingest API keys (the HTTP API's ``Auth``)."""

    def set_keys(self, keys: tuple[str, ...]) -> None:
        """Replace the accepted keys."""


class Target(Protocol):
    """Where synced state is put in force."""

    def put_catalog(self, catalog: Catalog, doc: dict[str, Any]) -> None:
        """Put a validated catalog (and its document form) in force."""

    def put_api_keys(self, keys: tuple[str, ...]) -> None:
        """Replace the ingest API keys."""


class EmbeddedTarget:
    """The running embedded plane: decisions and the aggregator switch catalogs together."""

    def __init__(self, holder: CatalogHolder) -> None:
        self._holder = holder
        self._auth: KeySink | None = None
        self._keys: tuple[str, ...] | None = None

    def bind_auth(self, auth: KeySink) -> None:
        """Attach the HTTP API's key check (created after the agent starts)."""
        self._auth = auth
        if self._keys is not None:
            auth.set_keys(self._keys)

    def put_catalog(self, catalog: Catalog, doc: dict[str, Any]) -> None:
        self._holder.set(catalog)

    def put_api_keys(self, keys: tuple[str, ...]) -> None:
        self._keys = keys
        if self._auth is not None:
            self._auth.set_keys(keys)


class FileTarget:
    """Files on a shared volume: ``catalog.yaml`` (load it with ``METERPLANE_CATALOG``) and
    ``governance.json`` (ingest keys; owner-readable only) in the same directory."""

    def __init__(self, catalog_path: Path) -> None:
        self.catalog_path = catalog_path
        self.governance_path = catalog_path.with_name("governance.json")

    def put_catalog(self, catalog: Catalog, doc: dict[str, Any]) -> None:
        text = yaml.safe_dump(doc, sort_keys=False)
        write_atomic(self.catalog_path, text.encode(), mode=0o644)

    def put_api_keys(self, keys: tuple[str, ...]) -> None:
        body = json.dumps({"apiKeys": list(keys)}, indent=2).encode()
        write_atomic(self.governance_path, body, mode=0o600)
