"""Run ``migrate`` on a data directory and die mid-way (SIGKILL), for the resume tests.

``python -m tests.release.crashing_migrate DATA_DIR MIGRATIONS_DIR KILL_AT`` applies the
migrations in MIGRATIONS_DIR to the embedded engine in DATA_DIR and SIGKILLs itself at
the KILL_AT-th engine call (statement or insert), so nothing gets to clean up; with
KILL_AT 0 it runs to the end and prints the versions it applied as JSON.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa

from meterplane.core.storage import ChdbEngine, load_migrations, migrate


class DyingEngine:
    """A real chdb engine whose process is killed at the n-th call."""

    def __init__(self, engine: ChdbEngine, kill_at: int) -> None:
        self.engine = engine
        self.calls = 0
        self.kill_at = kill_at

    def _tick(self) -> None:
        self.calls += 1
        if self.calls == self.kill_at:
            os.kill(os.getpid(), signal.SIGKILL)

    def execute(self, sql: str) -> None:
        self._tick()
        self.engine.execute(sql)

    def query_arrow(self, sql: str) -> pa.Table:
        return self.engine.query_arrow(sql)

    def insert(self, table: str, columns: Mapping[str, Sequence[Any]]) -> None:
        self._tick()
        self.engine.insert(table, columns)


def main(argv: list[str]) -> int:
    data_dir, migrations_dir, kill_at = Path(argv[0]), Path(argv[1]), int(argv[2])
    engine = ChdbEngine(data_dir / "chdb")
    applied = migrate(DyingEngine(engine, kill_at), load_migrations(migrations_dir))
    engine.close()
    print(json.dumps(applied))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
