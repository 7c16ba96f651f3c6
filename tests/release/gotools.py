"""Go tools the release tests run, installed on demand from the Go module proxy.

Each tool is built once into ``.cache/bin`` (gitignored) with ``go install`` at a pinned
version, under a file lock so parallel test processes build it once, and reused while
its ``-version`` output still names the pin.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BIN = REPO / ".cache" / "bin"
ACTIONLINT_MODULE = "github.com/rhysd/actionlint/cmd/actionlint"
ACTIONLINT_VERSION = "v1.7.7"


def _version_of(binary: Path) -> str:
    done = subprocess.run(
        [str(binary), "-version"], capture_output=True, text=True, timeout=30, check=False
    )
    return done.stdout.splitlines()[0].strip() if done.returncode == 0 and done.stdout else ""


def ensure_actionlint() -> Path:
    """``.cache/bin/actionlint`` at :data:`ACTIONLINT_VERSION`, building it if needed."""
    binary = BIN / "actionlint"
    if binary.is_file() and _version_of(binary) == ACTIONLINT_VERSION:
        return binary
    go = shutil.which("go")
    if go is None:
        raise RuntimeError("actionlint is not installed and no Go toolchain is on PATH")
    BIN.mkdir(parents=True, exist_ok=True)
    with (BIN / ".actionlint.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if binary.is_file() and _version_of(binary) == ACTIONLINT_VERSION:
            return binary
        env = dict(os.environ, GOBIN=str(BIN), GOFLAGS="-mod=mod", CGO_ENABLED="0")
        done = subprocess.run(
            [go, "install", f"{ACTIONLINT_MODULE}@{ACTIONLINT_VERSION}"],
            capture_output=True,
            text=True,
            timeout=900,
            env=env,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"go install actionlint failed:\n{done.stderr[-2000:]}")
    return binary
