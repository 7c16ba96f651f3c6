"""What storage relies on from any ClickHouse engine, run against chdb and a server."""

from __future__ import annotations

from typing import Any

from meterplane.core.storage import SqlEngine, load_migrations, migrate

T0 = 1_795_000_000_123_456  # an instant with microseconds


def _rows(engine: SqlEngine, sql: str) -> list[tuple[Any, ...]]:
    table = engine.query_arrow(sql)
    if not table.num_rows:
        return []
    return [
        tuple(v.decode() if isinstance(v, bytes) else v for v in row.values())
        for row in table.to_pylist()
    ]


def exercise(engine: SqlEngine) -> dict[str, list[tuple[Any, ...]]]:
    """Migrate (twice), write events and counters as the aggregator does, read them back."""
    numbers = [m.version for m in load_migrations()]
    assert migrate(engine) == numbers
    assert migrate(engine) == []  # idempotent: recorded, not applied again
    base = {
        "customer_id": ["acme", "acme", "acme", "globex"],
        "idempotency_key": ["k1", "k2", "k1", "k1"],
        "kind": ["event", "event", "event", "usage"],
        "name": ["api_call", "completion", "api_call", "seats"],
        "timestamp": [T0, T0 + 1, T0 + 2, T0 + 3],
        "ingested_at": [T0 + 10, T0 + 11, T0 + 12, T0 + 13],
        "resource_id": ["", "r1", "", ""],
        "payload": [b'{"n": 1.50}', b"{}", b'{"n": "later copy"}', b'{"v": 3}'],
        "log_pos": [5, 6, 9, 7],
    }
    engine.insert("events", base)
    counters = {
        "customer_id": ["acme", "acme", "acme"],
        "feature_id": ["api-calls", "api-calls", "seats"],
        "period_start": [T0, T0, 0],
        "resource_id": ["", "", ""],
        "period_end": [T0 + 3_600_000_000, T0 + 3_600_000_000, None],
        "value": [1.0, 0.1 + 0.2, 7.0],
        "updated_at": [T0, T0 + 5, T0],
        "version": [1, 2, 1],
    }
    engine.insert("counters", counters)
    engine.insert("counters", {k: [] for k in counters})  # an empty insert is a no-op
    return {
        "migrations": _rows(engine, "SELECT version, name FROM schema_migrations ORDER BY version"),
        "events": _rows(
            engine,
            "SELECT customer_id, idempotency_key, name, toUnixTimestamp64Micro(timestamp) AS t,"
            " toUnixTimestamp64Micro(ingested_at) AS i, resource_id, payload, log_pos"
            " FROM events FINAL ORDER BY customer_id, idempotency_key",
        ),
        "counters": _rows(
            engine,
            "SELECT customer_id, feature_id, toUnixTimestamp64Micro(period_start) AS s,"
            " toUnixTimestamp64Micro(argMax(period_end, version)) AS e,"
            " argMax(value, version) AS v, max(version) AS ver FROM counters"
            " GROUP BY customer_id, feature_id, period_start ORDER BY feature_id",
        ),
    }


def check(result: dict[str, list[tuple[Any, ...]]]) -> None:
    """The answers every engine must give to :func:`exercise`."""
    assert [v for v, _ in result["migrations"]] == [m.version for m in load_migrations()]
    assert result["events"] == [
        # The first copy of (acme, k1) wins over the later one with another payload.
        ("acme", "k1", "api_call", T0, T0 + 10, "", '{"n": 1.50}', 5),
        ("acme", "k2", "completion", T0 + 1, T0 + 11, "r1", "{}", 6),
        ("globex", "k1", "seats", T0 + 3, T0 + 13, "", '{"v": 3}', 7),
    ]
    assert result["counters"] == [
        ("acme", "api-calls", T0, T0 + 3_600_000_000, 0.1 + 0.2, 2),
        ("acme", "seats", 0, None, 7.0, 1),
    ]
