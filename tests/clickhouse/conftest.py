"""The server contract test runs whenever ``METERPLANE_CLICKHOUSE_URL`` is set.

Without it, tests marked ``clickhouse_server`` are deselected (not skipped): a ClickHouse
server cannot be installed on the CI machines, and the same SQL runs on chdb every run.
"""

from __future__ import annotations

import os

import pytest


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Deselect ``clickhouse_server`` tests when no server URL is configured."""
    if os.environ.get("METERPLANE_CLICKHOUSE_URL"):
        return
    keep = [i for i in items if i.get_closest_marker("clickhouse_server") is None]
    if len(keep) != len(items):
        config.hook.pytest_deselected(items=[i for i in items if i not in keep])
        items[:] = keep
