"""Read access to a ClickHouse server for the standalone agent (``METERPLANE_CLICKHOUSE_URL``).

Only ``query_arrow`` is needed (``adapters.ArrowQuery``): the agent reads the ``counters``
table of the ``meterplane`` database and writes nothing, so its database user can be
read-only (``GRANT SELECT ON meterplane.counters``).
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa

from meterplane.core.errors import ConfigError
from meterplane.core.storage import DATABASE


class ClickHouseReader:
    """``query_arrow`` over clickhouse-connect (HTTP interface, DSN URL)."""

    def __init__(self, url: str) -> None:
        import clickhouse_connect  # noqa: PLC0415 - only the production path needs the driver

        # The tables live in the ``meterplane`` database (as on chdb); no session, so one
        # client serves the agent's threads.
        try:
            self._client: Any = clickhouse_connect.get_client(
                dsn=url, database=DATABASE, autogenerate_session_id=False
            )
        except Exception as err:  # the driver raises several types; all mean "not reachable"
            raise ConfigError(f"METERPLANE_CLICKHOUSE_URL: cannot connect: {err}") from None

    def query_arrow(self, sql: str) -> pa.Table:
        table: pa.Table = self._client.query_arrow(sql)
        return table

    def close(self) -> None:
        """Close the connection pool."""
        self._client.close()
