"""Compile the aggregator's native core (``_native.c``) for this interpreter.

The one place its compiler flags live: ``make setup`` runs it in a checkout, and the app
image's build stage runs it on the installed package, so that ``meterplane serve`` in a
container counts with the core as it does here. Without a compiler nothing changes but
speed: ``native.py`` falls back to the Python reference path.
Run: ``python -m meterplane.aggregate.build_native [--out PATH]`` (``CC`` picks the compiler).
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import sysconfig
from collections.abc import Sequence
from pathlib import Path

SOURCE = Path(__file__).resolve().parent / "_native.c"
TARGET = SOURCE.with_name("_native.so")
# -ffp-contract=off: no fused multiply-adds, so sums round exactly as the Python path's.
FLAGS = (
    "-O2",
    "-shared",
    "-fPIC",
    "-std=c11",
    "-ffp-contract=off",
    "-Wall",
    "-Wextra",
    "-Wno-unused-parameter",
    "-Wno-missing-field-initializers",
    "-Werror",
)


def command(out: Path = TARGET, cc: str | None = None) -> list[str]:
    """The compiler's command line for ``out``."""
    include = sysconfig.get_paths()["include"]
    compiler = shlex.split(cc or os.environ.get("CC") or "cc")
    return [*compiler, *FLAGS, f"-I{include}", str(SOURCE), "-o", str(out)]


def main(argv: Sequence[str] | None = None) -> int:
    """Compile; the compiler's exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=TARGET, help=f"default: {TARGET}")
    args = parser.parse_args(argv)
    cmd = command(args.out)
    print(shlex.join(cmd), file=sys.stderr)
    return subprocess.run(cmd, check=False).returncode


if __name__ == "__main__":
    raise SystemExit(main())
