"""``meterplane aggregate`` hands over to the PyFlink job in its own interpreter."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

METERPLANE = str(Path(sys.executable).parent / "meterplane")


def test_missing_interpreter_is_one_line_naming_the_setting(tmp_path: Path) -> None:
    env = {**os.environ, "METERPLANE_FLINK_PYTHON": str(tmp_path / "nope" / "python")}
    done = subprocess.run(
        [METERPLANE, "aggregate"], env=env, capture_output=True, text=True, check=False
    )
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1
    assert done.stderr.startswith("meterplane: METERPLANE_FLINK_PYTHON: no PyFlink interpreter")


@pytest.mark.engines
def test_runs_the_job_module_with_the_flink_interpreter() -> None:
    from meterplane.testing.engines import ensure_flink_venv  # noqa: PLC0415

    env = {**os.environ, "METERPLANE_FLINK_PYTHON": str(ensure_flink_venv())}
    done = subprocess.run(
        [METERPLANE, "aggregate", "--", "--help"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "--mini-batch-ms" in done.stdout
    assert "meterplane_flink.job" in done.stdout
