"""``SqlEngine`` on a ClickHouse server or cluster, through clickhouse-connect.

It runs exactly the SQL that chdb runs in embedded mode: the numbered migrations of
``meterplane.core.storage`` and the same queries, with rows handed over as the same Arrow
tables (``meterplane.core.storage.to_arrow``), so the two engines cannot drift apart in
how they type a column.

On a cluster (the Altinity ClickHouseInstallation the components deploy) the database is
created with the ``Replicated`` database engine: every DDL statement of a migration is
then replicated to all replicas, and the plain ``ReplacingMergeTree`` tables of the
migrations become ``ReplicatedReplacingMergeTree`` automatically, so the migrations stay
identical to the embedded ones.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pyarrow as pa

from meterplane.core.errors import ConfigError
from meterplane.core.storage import DATABASE, to_arrow


class ClickHouseEngine:
    """A ClickHouse server (``METERPLANE_CLICKHOUSE_URL``, e.g. ``http://user:pw@host:8123``)."""

    def __init__(self, url: str, database: str = DATABASE, *, replicated: bool = False) -> None:
        import clickhouse_connect  # noqa: PLC0415 - only production needs the driver

        if not database.isidentifier():
            raise ConfigError(f"ClickHouse database name {database!r} is not an identifier")
        try:
            admin = clickhouse_connect.get_client(dsn=url, autogenerate_session_id=False)
        except Exception as err:
            raise ConfigError(f"METERPLANE_CLICKHOUSE_URL: cannot connect: {err}") from err
        engine = (
            f" ENGINE = Replicated('/clickhouse/databases/{database}', '{{shard}}', '{{replica}}')"
            if replicated
            else ""
        )
        try:
            admin.command(f"CREATE DATABASE IF NOT EXISTS {database}{engine}")
        finally:
            admin.close()
        # No session: the HTTP client may then serve the app's threads concurrently.
        self._client: Any = clickhouse_connect.get_client(
            dsn=url, database=database, autogenerate_session_id=False
        )
        self.database = database

    def execute(self, sql: str) -> None:
        """Run a statement that returns nothing."""
        self._client.command(sql)

    def query_arrow(self, sql: str) -> pa.Table:
        """Run a query; its result as an Arrow table."""
        table: pa.Table = self._client.query_arrow(sql)
        return table

    def insert(self, table: str, columns: Mapping[str, Sequence[Any]]) -> None:
        """Insert rows given column-wise, typed exactly as on chdb."""
        names = list(columns)
        if not names or not len(columns[names[0]]):
            return
        self._client.insert_arrow(table, to_arrow(columns))

    def close(self) -> None:
        """Close the HTTP connection pool."""
        self._client.close()
