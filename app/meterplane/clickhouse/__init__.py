"""The ClickHouse server driver (clickhouse-connect) behind ``core.storage.SqlEngine``."""
