"""``meterplane aggregate``: the aggregation job (PyFlink), run from its own interpreter.

PyFlink pins Apache Beam, whose grpcio and dill pins conflict with Pulumi's, so the job
lives in its own environment (``app/meterplane_flink/requirements.txt``; the Flink-job
image in production, ``.flink-venv`` here). This command replaces itself with that
interpreter running ``meterplane_flink.job`` and the given options — the same module the
Flink operator runs (``-pym meterplane_flink.job``). Embedded mode needs none of this:
``meterplane serve`` counts in-process.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import NoReturn

import meterplane

APP_DIR = Path(meterplane.__file__).resolve().parent.parent  # holds meterplane_flink too


def _interpreter() -> Path:
    configured = os.environ.get("METERPLANE_FLINK_PYTHON")
    if configured:
        return Path(configured)
    return APP_DIR.parent / ".flink-venv" / "bin" / "python"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "job_args",
        nargs=argparse.REMAINDER,
        help="options for the job (e.g. --bootstrap, --mini-batch-ms); -- --help lists them",
    )


def run(args: argparse.Namespace) -> int:
    python = _interpreter()
    if not os.access(python, os.X_OK):
        print(
            f"meterplane: METERPLANE_FLINK_PYTHON: no PyFlink interpreter at {python} "
            "(make engines-setup builds .flink-venv)",
            file=sys.stderr,
        )
        return 2
    job_args = list(args.job_args)
    if job_args[:1] == ["--"]:
        job_args = job_args[1:]
    pythonpath = os.pathsep.join(p for p in (str(APP_DIR), os.environ.get("PYTHONPATH")) if p)
    env = {**os.environ, "PYTHONPATH": pythonpath}
    return _exec(python, [str(python), "-m", "meterplane_flink.job", *job_args], env)


def _exec(python: Path, argv: list[str], env: dict[str, str]) -> NoReturn:
    """Become the job: signals (SIGTERM from the orchestrator) reach it directly."""
    os.execve(python, argv, env)  # noqa: S606 - a fixed argv, no shell
