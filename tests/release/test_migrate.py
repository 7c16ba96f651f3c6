"""ClickHouse migrations on chdb: applied once, a no-op on rerun, resumed after a crash.

Each run is its own process, as the pre-upgrade Job is (and chdb allows one session per
process); the crash is a real SIGKILL in the middle of a run.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from meterplane.core.storage import MIGRATIONS_DIR, load_migrations

METERPLANE = Path(sys.executable).parent / "meterplane"


def migrate_cli(data_dir: Path, *extra: str) -> list[int]:
    done = subprocess.run(
        [str(METERPLANE), "migrate", "--data-dir", str(data_dir), "--json", *extra],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    applied: list[int] = json.loads(done.stdout)["applied"]
    return applied


def query(data_dir: Path, *sql: str) -> list[list[list[object]]]:
    """Run each query in one fresh process on the data directory; rows as lists."""
    script = (
        "import json, sys\n"
        "from pathlib import Path\n"
        "from meterplane.core.storage import ChdbEngine\n"
        "e = ChdbEngine(Path(sys.argv[1]) / 'chdb')\n"
        "out = []\n"
        "for q in sys.argv[2:]:\n"
        "    if q.startswith('?'):\n"  # '?table': the table's rows only if it exists
        '        n = e.query_arrow("SELECT count() FROM system.tables WHERE "\n'
        "            f\"database = 'meterplane' AND name = '{q[1:].split()[0]}'\")\n"
        "        if n.column(0)[0].as_py() == 0:\n"
        "            out.append([])\n"
        "            continue\n"
        "        q = q[1:].split(' ', 1)[1]\n"
        "    t = e.query_arrow(q)\n"
        "    out.append([list(r.values()) for r in t.to_pylist()])\n"
        "print(json.dumps(out, default=str))\n"
        "e.close()\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(data_dir), *sql],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    results: list[list[list[object]]] = json.loads(done.stdout)
    return results


RECORDED = (
    "?schema_migrations SELECT version, count() FROM schema_migrations "
    "GROUP BY version ORDER BY version"
)
ITEMS_COLUMNS = (
    "SELECT name FROM system.columns WHERE database = 'meterplane' AND table = 'items' "
    "ORDER BY name"
)


def run_migrate(data_dir: Path, migrations: Path, kill_at: int) -> subprocess.CompletedProcess[str]:
    module = "tests.release.crashing_migrate"
    return subprocess.run(
        [sys.executable, "-m", module, str(data_dir), str(migrations), str(kill_at)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=Path(__file__).resolve().parents[2],
    )


@pytest.mark.slow
def test_pending_migrations_apply_once_and_a_rerun_does_nothing(tmp_path: Path) -> None:
    every = [m.version for m in load_migrations()]
    assert migrate_cli(tmp_path) == every
    assert migrate_cli(tmp_path) == []
    rows, tables = query(tmp_path, RECORDED, "SHOW TABLES")
    assert rows == [[v, 1] for v in every]
    names = {r[0] for r in tables}
    assert {"events", "counters", "schema_migrations"} <= names


@pytest.mark.slow
@pytest.mark.parametrize(
    ("kill_at", "recorded_before"),
    [
        (1, []),  # creating schema_migrations itself
        (3, []),  # migration 1 ran, not yet recorded
        (5, [1]),  # between migration 2's two statements
        (7, [1, 2]),  # in migration 3
    ],
)
def test_an_interrupted_run_resumes_safely(
    tmp_path: Path, kill_at: int, recorded_before: list[int]
) -> None:
    # Engine calls: 1 schema_migrations, 2 m1, 3 record 1, 4-5 m2 (two statements),
    # 6 record 2, 7 m3 (alters m1's table), 8 record 3.
    migrations = tmp_path / "migrations"
    migrations.mkdir()
    (migrations / "0001_items.sql").write_text(
        "CREATE TABLE IF NOT EXISTS items (id UInt32) ENGINE = MergeTree ORDER BY id"
    )
    (migrations / "0002_more.sql").write_text(
        "CREATE TABLE IF NOT EXISTS a (id UInt32) ENGINE = MergeTree ORDER BY id;\n"
        "CREATE TABLE IF NOT EXISTS b (id UInt32) ENGINE = MergeTree ORDER BY id;\n"
    )
    (migrations / "0003_column.sql").write_text(
        "ALTER TABLE items ADD COLUMN IF NOT EXISTS note String DEFAULT ''"
    )
    data = tmp_path / "data"
    killed = run_migrate(data, migrations, kill_at)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    (before,) = query(data, RECORDED)
    assert [v for v, _ in before] == recorded_before

    resumed = run_migrate(data, migrations, 0)
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(resumed.stdout) == [v for v in (1, 2, 3) if v not in recorded_before]
    after, columns = query(data, RECORDED, ITEMS_COLUMNS)
    assert after == [[1, 1], [2, 1], [3, 1]]
    assert columns == [["id"], ["note"]]
    again = run_migrate(data, migrations, 0)
    assert json.loads(again.stdout) == []


def test_the_shipped_migrations_are_numbered_and_idempotent_sql() -> None:
    migrations = load_migrations(MIGRATIONS_DIR)
    assert [m.version for m in migrations] == list(range(1, len(migrations) + 1))
    for m in migrations:
        for statement in filter(None, (s.strip() for s in m.sql.split(";"))):
            body = "\n".join(
                ln for ln in statement.splitlines() if not ln.lstrip().startswith("--")
            ).upper()
            if not body.strip():
                continue
            assert "IF NOT EXISTS" in body or "IF EXISTS" in body, (m.name, statement[:80])
