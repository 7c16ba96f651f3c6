"""Read access to a ClickHouse server for the standalone agent (``METERPLANE_CLICKHOUSE_URL``).

Only ``query_arrow`` is needed (``adapters.ArrowQuery``): the agent reads the ``counters``
table and writes nothing, so its database user can be read-only.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa


class ClickHouseReader:
    """``query_arrow`` over clickhouse-connect (HTTP interface, DSN URL)."""

    def __init__(self, url: str) -> None:
        import clickhouse_connect  # noqa: PLC0415 - only the production path needs the driver

        self._client: Any = clickhouse_connect.get_client(dsn=url)

    def query_arrow(self, sql: str) -> pa.Table:
        table: pa.Table = self._client.query_arrow(sql)
        return table

    def close(self) -> None:
        """Close the connection pool."""
        self._client.close()
