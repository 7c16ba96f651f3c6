"""The storage contract on chdb (every run) and on a ClickHouse server (when configured)."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

from meterplane.core.storage import ChdbEngine
from tests.clickhouse.contract import check, exercise


def test_contract_on_chdb(tmp_path: Path) -> None:
    engine = ChdbEngine(tmp_path / "chdb")
    try:
        check(exercise(engine))
    finally:
        engine.close()


@pytest.mark.clickhouse_server
def test_contract_on_clickhouse_server(tmp_path: Path) -> None:
    from meterplane.clickhouse.engine import ClickHouseEngine  # noqa: PLC0415

    url = os.environ["METERPLANE_CLICKHOUSE_URL"]
    database = f"meterplane_contract_{uuid.uuid4().hex[:12]}"
    server = ClickHouseEngine(url, database=database)
    try:
        on_server = exercise(server)
        check(on_server)
    finally:
        server.execute(f"DROP DATABASE IF EXISTS {database}")
        server.close()
    chdb = ChdbEngine(tmp_path / "chdb")
    try:
        assert exercise(chdb) == on_server  # the same answers, value by value
    finally:
        chdb.close()
