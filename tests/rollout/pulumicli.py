"""A Pulumi CLI for the Automation API tests: on PATH, cached, or built from the Go proxy.

The CLI's main package (``github.com/pulumi/pulumi/pkg/v3/cmd/pulumi``) cannot be
``go install``-ed: its go.mod replaces the SDK module with ``../sdk``. So the pinned
``pkg`` and ``sdk`` module versions are downloaded from the Go module proxy, laid side by
side as in the repository, and built with ``go build`` into ``.cache/bin/pulumi`` (under
a file lock; cold, this takes tens of minutes on two cores, so CI installs the CLI with
``pulumi/actions`` instead and the build is the offline fallback). The Python runtime
plugin is not needed: the tests use inline programs, which the Automation API serves from
this process.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CACHE = REPO / ".cache"
PULUMI_MODULE_VERSION = "v3.250.0"
# A cold build is long: keep it from starving the other work on the machine.
NICE = ("nice", "-n", "19")
# Release builds stamp the version; the Automation API refuses a CLI that reports none.
MAIN = "./cmd/pulumi"
LDFLAGS = f"-X github.com/pulumi/pulumi/sdk/v3/go/common/version.Version={PULUMI_MODULE_VERSION}"


def _works(binary: Path) -> bool:
    try:
        done = subprocess.run(
            [str(binary), "version"], capture_output=True, text=True, timeout=60, check=False
        )
    except OSError:
        return False
    return done.returncode == 0 and done.stdout.strip().startswith("v3.")


def _download(module: str, go: str, env: dict[str, str]) -> Path:
    done = subprocess.run(
        [go, "mod", "download", "-json", f"{module}@{PULUMI_MODULE_VERSION}"],
        capture_output=True,
        text=True,
        timeout=900,
        env=env,
        check=False,
        cwd=CACHE,
    )
    info = json.loads(done.stdout or "{}")
    if done.returncode != 0 or "Dir" not in info:
        raise RuntimeError(f"go mod download {module}: {info.get('Error') or done.stderr[-500:]}")
    return Path(info["Dir"])


def ensure_pulumi_cli() -> Path:
    """A root directory whose ``bin/pulumi`` works (``PulumiCommand(root=...)``)."""
    on_path = shutil.which("pulumi")
    if on_path is not None and _works(Path(on_path)):
        return Path(on_path).resolve().parent.parent
    binary = CACHE / "bin" / "pulumi"
    if _works(binary):
        return CACHE
    go = shutil.which("go")
    if go is None:
        raise RuntimeError("no pulumi CLI on PATH or in .cache/bin, and no Go toolchain")
    binary.parent.mkdir(parents=True, exist_ok=True)
    with (binary.parent / ".pulumi.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _works(binary):
            return CACHE
        env = dict(os.environ, GOFLAGS="-mod=mod")
        src = CACHE / "pulumi-build" / PULUMI_MODULE_VERSION
        if not (src / "pkg" / "go.mod").is_file():
            pkg = _download("github.com/pulumi/pulumi/pkg/v3", go, env)
            sdk = _download("github.com/pulumi/pulumi/sdk/v3", go, env)
            shutil.rmtree(src, ignore_errors=True)
            src.mkdir(parents=True)
            shutil.copytree(pkg, src / "pkg")
            shutil.copytree(sdk, src / "sdk")
            for path in src.rglob("*"):
                path.chmod(path.stat().st_mode | 0o200)
        done = subprocess.run(
            [
                *NICE,
                go,
                "build",
                "-p",
                "1",
                "-trimpath",
                "-ldflags",
                LDFLAGS,
                "-o",
                str(binary),
                MAIN,
            ],
            capture_output=True,
            text=True,
            timeout=3600,
            env=env,
            cwd=src / "pkg",
            check=False,
        )
        if done.returncode != 0 or not _works(binary):
            raise RuntimeError(f"building the pulumi CLI failed:\n{done.stderr[-2000:]}")
    return CACHE
