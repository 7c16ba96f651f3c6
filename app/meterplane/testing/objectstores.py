"""Real object-store peers for tests and benchmarks, on loopback free ports.

- moto's server (S3 and KMS in one process; ``moto[server]`` is in the dev group);
- Azurite's blob service, from npm, pinned, installed into ``.cache/objectstores/``;
- fake-gcs-server, built from the Go module proxy, pinned, installed into the same cache.

Installs are idempotent, happen on first use under a file lock (several pytest processes
may start at once), and only the first run downloads anything.
``python -m meterplane.testing.objectstores setup`` installs them up front.

What the emulators do not do (and the tests therefore assert on the request the SDK sent
instead): Azurite ignores ``x-ms-encryption-scope`` and never reports a scope back;
fake-gcs-server ignores ``kmsKeyName`` and never reports a key back. moto's S3 records and
reports the SSE-KMS key of each object but does not refuse a disabled key (real S3 does),
while moto's KMS does report the key's state.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

from meterplane.testing.engines import EngineSetupError, free_port, repo_root

# 3.36 and later require Node >= 21; 3.35.0 is the newest that runs on Debian's Node 20.
AZURITE_VERSION = "3.35.0"
FAKE_GCS_SERVER_VERSION = "v1.56.1"
AZURITE_ACCOUNT = "devstoreaccount1"
# Azurite's fixed, publicly documented development key (not a secret).
AZURITE_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)


def cache_dir() -> Path:
    """Where the peers are installed (``METERPLANE_OBJECTSTORES_CACHE`` overrides)."""
    override = os.environ.get("METERPLANE_OBJECTSTORES_CACHE")
    path = Path(override) if override else repo_root() / ".cache" / "objectstores"
    path.mkdir(parents=True, exist_ok=True)
    return path


@contextlib.contextmanager
def _install_lock(name: str) -> Iterator[None]:
    with (cache_dir() / f".{name}.lock").open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _run(argv: list[str], env: Mapping[str, str] | None, what: str, timeout: float) -> None:
    try:
        done = subprocess.run(
            argv, env=env, capture_output=True, text=True, timeout=timeout, check=False
        )
    except FileNotFoundError:
        raise EngineSetupError(f"{what}: {argv[0]} is not on PATH") from None
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-5:]
        raise EngineSetupError(f"{what} failed ({done.returncode}): " + " | ".join(tail))


def ensure_azurite() -> Path:
    """The ``azurite-blob`` executable, installed from npm if missing."""
    home = cache_dir() / f"azurite-{AZURITE_VERSION}"
    exe = home / "node_modules" / ".bin" / "azurite-blob"
    if exe.exists():
        return exe
    with _install_lock("azurite"):
        if exe.exists():
            return exe
        staging = home.with_name(home.name + ".partial")
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        _run(
            [
                "npm",
                "install",
                "--no-audit",
                "--no-fund",
                "--no-save",
                "--prefix",
                str(staging),
                f"azurite@{AZURITE_VERSION}",
            ],
            None,
            f"npm install azurite@{AZURITE_VERSION}",
            timeout=900,
        )
        shutil.rmtree(home, ignore_errors=True)
        staging.rename(home)
    return exe


def ensure_fake_gcs_server() -> Path:
    """The ``fake-gcs-server`` binary, built from the Go module proxy if missing."""
    gobin = cache_dir() / "go" / f"bin-{FAKE_GCS_SERVER_VERSION.lstrip('v')}"
    exe = gobin / "fake-gcs-server"
    if exe.exists():
        return exe
    with _install_lock("fake-gcs-server"):
        if exe.exists():
            return exe
        go = shutil.which("go") or (
            "/usr/local/go/bin/go" if Path("/usr/local/go/bin/go").exists() else None
        )
        if go is None:
            raise EngineSetupError("Go is not on PATH; it builds fake-gcs-server")
        build_cache = Path(tempfile.mkdtemp(prefix="gobuild-", dir=cache_dir()))
        env = {
            **os.environ,
            "GOBIN": str(gobin),
            "GOMODCACHE": str(cache_dir() / "go" / "mod"),
            "GOCACHE": str(build_cache),  # build objects are not worth keeping
            "GOFLAGS": "-modcacherw",
            "CGO_ENABLED": "0",
        }
        try:
            _run(
                [go, "install", f"github.com/fsouza/fake-gcs-server@{FAKE_GCS_SERVER_VERSION}"],
                env,
                f"go install fake-gcs-server@{FAKE_GCS_SERVER_VERSION}",
                timeout=1800,
            )
        finally:
            shutil.rmtree(build_cache, ignore_errors=True)
    return exe


class Peer:
    """A server process on a loopback port, with its output in a log file."""

    name = "peer"

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port = free_port()
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def log_file(self) -> Path:
        """Where the server's stdout and stderr go."""
        return self.workdir / f"{self.name}.log"

    def argv(self) -> list[str]:
        """The command line of the server."""
        raise EngineSetupError(f"{type(self).__name__} has no command line")

    def start(self, timeout: float = 60.0) -> None:
        """Start the server and wait until it accepts connections."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        with self.log_file.open("wb") as out:
            self._proc = subprocess.Popen(
                self.argv(), stdout=out, stderr=subprocess.STDOUT, cwd=self.workdir
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                tail = self.log_file.read_text(errors="replace")[-2000:]
                raise EngineSetupError(f"{self.name} exited at start-up: {tail}")
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5),
            ):
                return
            time.sleep(0.1)
        self.stop()
        raise EngineSetupError(f"{self.name} did not listen on {self.port} in {timeout}s")

    def stop(self) -> None:
        """Stop the server (terminate, then kill)."""
        if self._proc is None:
            return
        self._proc.terminate()
        try:
            self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait(timeout=10)
        self._proc = None

    @property
    def endpoint(self) -> str:
        """The server's base URL."""
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> Peer:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


class MotoServer(Peer):
    """moto's server: S3 and KMS (and every other AWS API moto has) on one port."""

    name = "moto"

    def argv(self) -> list[str]:
        return [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)]

    def env(self) -> dict[str, str]:
        """Environment that points boto3 at this server (the standard AWS variables)."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_REGION": "us-east-1",
        }


class Azurite(Peer):
    """Azurite's blob service (the npm package), persisting under ``workdir``."""

    name = "azurite"

    def argv(self) -> list[str]:
        return [
            str(ensure_azurite()),
            "--blobHost",
            "127.0.0.1",
            "--blobPort",
            str(self.port),
            "--location",
            str(self.workdir / "data"),
            "--skipApiVersionCheck",
            "--loose",
        ]

    @property
    def connection_string(self) -> str:
        """The connection string of Azurite's development account on this port."""
        return (
            f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};"
            f"AccountKey={AZURITE_KEY};"
            f"BlobEndpoint={self.endpoint}/{AZURITE_ACCOUNT};"
        )

    def env(self) -> dict[str, str]:
        """Environment for the Azure SDK (the standard variable)."""
        return {"AZURE_STORAGE_CONNECTION_STRING": self.connection_string}


class FakeGcsServer(Peer):
    """fake-gcs-server (Go), in memory."""

    name = "fake-gcs-server"

    def argv(self) -> list[str]:
        return [
            str(ensure_fake_gcs_server()),
            "-scheme",
            "http",
            "-host",
            "127.0.0.1",
            "-port",
            str(self.port),
            "-backend",
            "memory",
            "-external-url",
            self.endpoint,
            "-log-level",
            "warn",
        ]

    def env(self) -> dict[str, str]:
        """Environment for google-cloud-storage (its standard emulator variable)."""
        return {"STORAGE_EMULATOR_HOST": self.endpoint, "GOOGLE_CLOUD_PROJECT": "meterplane"}


def main(argv: list[str] | None = None) -> int:
    """``python -m meterplane.testing.objectstores setup``: install Azurite and
    fake-gcs-server into the cache."""
    args = sys.argv[1:] if argv is None else argv
    if args != ["setup"]:
        print("usage: python -m meterplane.testing.objectstores setup", file=sys.stderr)
        return 2
    print(ensure_azurite())
    print(ensure_fake_gcs_server())
    return 0


if __name__ == "__main__":
    sys.exit(main())
