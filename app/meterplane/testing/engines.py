"""Real production engines for tests and benchmarks, installed by the project itself.

What this module provides, all on loopback and all cached under ``.cache/engines/`` of
the repository (gitignored) so that only the first run downloads anything:

- the Apache Kafka broker jars, resolved from Maven Central by ``tools/kafka/pom.xml``,
  and :class:`KafkaBroker`, a single-node KRaft broker+controller on free ports;
- the Flink Kafka SQL connector jar (``tools/kafka/flink-connector-pom.xml``);
- the PyFlink environment ``.flink-venv`` built from ``app/meterplane_flink/requirements.txt``
  (kept apart from the main venv: PyFlink's Beam pins conflict with Pulumi's).

``python -m meterplane.testing.engines setup`` installs all of it (the Makefile's
``engines-setup`` runs it before the tests); the test fixtures call the same idempotent
``ensure_*`` functions, so running pytest directly works too.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

KAFKA_VERSION = "4.1.1"
FLINK_VERSION = "2.2.1"
FLINK_KAFKA_CONNECTOR_VERSION = "5.0.0-2.2"


class EngineSetupError(RuntimeError):
    """An engine could not be installed or started (the message says which and why)."""


def repo_root() -> Path:
    """The repository checkout this package runs from (the project is installed editable)."""
    here = Path(__file__).resolve()
    for parent in here.parents:
        if (parent / "tools" / "kafka" / "pom.xml").is_file():
            return parent
    raise EngineSetupError(f"no repository checkout above {here}: tools/kafka/pom.xml missing")


def cache_dir() -> Path:
    """Where downloaded engines live (``METERPLANE_ENGINES_CACHE`` overrides)."""
    override = os.environ.get("METERPLANE_ENGINES_CACHE")
    path = Path(override) if override else repo_root() / ".cache" / "engines"
    path.mkdir(parents=True, exist_ok=True)
    return path


@contextlib.contextmanager
def _install_lock(name: str) -> Iterator[None]:
    # Several pytest processes (or a bench and a test) may install at once; one does it.
    lock_path = cache_dir() / f".{name}.lock"
    with lock_path.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _run_maven(pom: Path, output_dir: Path) -> None:
    mvn = shutil.which("mvn")
    if mvn is None:
        raise EngineSetupError("Maven (mvn) is not on PATH; it resolves the engine jars")
    staging = output_dir.with_name(output_dir.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    argv = [
        mvn,
        "-B",
        "-q",
        "-f",
        str(pom),
        f"-Dmaven.repo.local={cache_dir() / 'm2'}",
        "dependency:copy-dependencies",
        "-DincludeScope=runtime",
        f"-DoutputDirectory={staging}",
    ]
    result = subprocess.run(argv, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        tail = (result.stdout + result.stderr)[-2000:]
        raise EngineSetupError(f"mvn failed for {pom.name}:\n{tail}")
    # Rename last, so a half-finished download is never mistaken for a complete one.
    shutil.rmtree(output_dir, ignore_errors=True)
    staging.rename(output_dir)


def ensure_kafka_jars() -> Path:
    """The directory of the Kafka broker's runtime classpath, downloading it once."""
    target = cache_dir() / f"kafka-{KAFKA_VERSION}"
    if (target / f"kafka_2.13-{KAFKA_VERSION}.jar").is_file():
        return target
    with _install_lock("kafka"):
        if not (target / f"kafka_2.13-{KAFKA_VERSION}.jar").is_file():
            _run_maven(repo_root() / "tools" / "kafka" / "pom.xml", target)
    return target


def ensure_flink_connector_jar() -> Path:
    """The Flink Kafka SQL connector jar, downloading it once."""
    target_dir = cache_dir() / f"flink-connector-kafka-{FLINK_KAFKA_CONNECTOR_VERSION}"
    jar = target_dir / f"flink-sql-connector-kafka-{FLINK_KAFKA_CONNECTOR_VERSION}.jar"
    if jar.is_file():
        return jar
    with _install_lock("flink-connector"):
        if not jar.is_file():
            _run_maven(repo_root() / "tools" / "kafka" / "flink-connector-pom.xml", target_dir)
    if not jar.is_file():
        raise EngineSetupError(f"Maven finished but {jar.name} is missing")
    return jar


def _uv_command() -> list[str]:
    # The Makefile installs uv into the system interpreter (python3 -m uv); a standalone
    # uv on PATH works as well.
    candidates = [[sys.executable, "-m", "uv"], ["python3", "-m", "uv"]]
    if (uv := shutil.which("uv")) is not None:
        candidates.insert(0, [uv])
    for candidate in candidates:
        probe = subprocess.run([*candidate, "--version"], capture_output=True, check=False)
        if probe.returncode == 0:
            return candidate
    raise EngineSetupError("uv is not available (python3 -m pip install uv==0.13.8)")


def flink_requirements() -> Path:
    """The exact pins of the Flink job's environment."""
    return repo_root() / "app" / "meterplane_flink" / "requirements.txt"


def flink_python() -> Path:
    """The interpreter of ``.flink-venv`` (``METERPLANE_FLINK_VENV`` overrides the venv)."""
    override = os.environ.get("METERPLANE_FLINK_VENV")
    venv = Path(override) if override else repo_root() / ".flink-venv"
    return venv / "bin" / "python"


def ensure_flink_venv() -> Path:
    """Create or refresh ``.flink-venv`` from the pinned requirements; returns its python."""
    python = flink_python()
    requirements = flink_requirements()
    digest = hashlib.sha256(requirements.read_bytes()).hexdigest()[:16]
    stamp = python.parent.parent / f".meterplane-installed-{digest}"
    if stamp.is_file():
        return python
    with _install_lock("flink-venv"):
        if stamp.is_file():
            return python
        venv = python.parent.parent
        uv = _uv_command()
        steps = [
            [*uv, "venv", "--quiet", "--allow-existing", "--python", "3.11", str(venv)],
            # pip sync removes anything not pinned, so the environment is exactly the file.
            [*uv, "pip", "sync", "--quiet", "--python", str(python), str(requirements)],
        ]
        for argv in steps:
            result = subprocess.run(argv, capture_output=True, text=True, check=False)
            if result.returncode != 0:
                tail = (result.stdout + result.stderr)[-2000:]
                raise EngineSetupError(f"creating .flink-venv failed: {' '.join(argv)}\n{tail}")
        for old in venv.glob(".meterplane-installed-*"):
            old.unlink()
        stamp.touch()
    return python


def ensure_all() -> None:
    """Install every engine the ``engines`` tests need (idempotent, cached)."""
    ensure_kafka_jars()
    ensure_flink_connector_jar()
    ensure_flink_venv()


def flink_env(log_dir: Path | None = None) -> dict[str, str]:
    """Environment for a Flink-venv process: ``app/`` importable, Flink logs in ``log_dir``."""
    env = dict(os.environ, PYTHONPATH=str(repo_root() / "app"))
    if log_dir is not None:
        log_dir.mkdir(parents=True, exist_ok=True)
        env["FLINK_LOG_DIR"] = str(log_dir)
    return env


def run_flink_module(
    python: Path, module: str, args: Sequence[str], timeout: float = 180.0
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m module args`` in the Flink environment with ``app/`` importable."""
    return subprocess.run(
        [str(python), "-m", module, *args],
        capture_output=True,
        text=True,
        env=flink_env(),
        timeout=timeout,
        check=False,
    )


def _cluster_id() -> str:
    """A random KRaft cluster id as Kafka's own ``Uuid.randomUuid`` makes one: base64url of
    16 random bytes, never starting with "-" (the storage tool would read it as an option;
    one id in 64 did, and the broker then failed to format its storage)."""
    while True:
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cid.startswith("-"):
            return cid


def free_port() -> int:
    """A TCP port on loopback that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


_LOG4J2 = """\
status = warn
appender.file.type = File
appender.file.name = FILE
appender.file.fileName = {log_file}
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = {level}
rootLogger.appenderRef.file.ref = FILE
logger.kafka.name = kafka
logger.kafka.level = {level}
logger.state.name = state.change.logger
logger.state.level = warn
"""


@dataclass
class KafkaBroker:
    """A single-node Apache Kafka (KRaft, combined broker+controller) on loopback.

    Ports and data directory stay fixed for the object's life, so :meth:`stop` then
    :meth:`start` brings the same broker back with its log intact (the fault tests rely
    on that: acked records must survive the restart).
    """

    data_dir: Path
    port: int = field(default_factory=free_port)
    controller_port: int = field(default_factory=free_port)
    heap: str = "768m"
    extra_config: Mapping[str, str] = field(default_factory=dict)
    _process: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)

    @property
    def bootstrap(self) -> str:
        """The ``bootstrap.servers`` string for clients."""
        return f"127.0.0.1:{self.port}"

    @property
    def log_file(self) -> Path:
        """The broker's own log (look here when a test fails)."""
        return self.data_dir / "server.log"

    def _config(self) -> dict[str, str]:
        config = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@127.0.0.1:{self.controller_port}",
            "listeners": (
                f"PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{self.controller_port}"
            ),
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{self.port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "log.dirs": str(self.data_dir / "log"),
            "num.partitions": "4",
            "num.network.threads": "2",
            "num.io.threads": "4",
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "4",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "transaction.state.log.num.partitions": "4",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "group.initial.rebalance.delay.ms": "0",
            "auto.create.topics.enable": "false",
            # Compaction of the counters topic should be visible within a test run.
            "log.cleaner.backoff.ms": "1000",
        }
        config.update(self.extra_config)
        return config

    def _java(self, main_class: str, *args: str) -> list[str]:
        java = shutil.which("java")
        if java is None:
            raise EngineSetupError("java is not on PATH; the Kafka broker needs Java 17+")
        classpath = str(ensure_kafka_jars() / "*")
        return [
            java,
            f"-Xms{self.heap}",
            f"-Xmx{self.heap}",
            "-XX:+UseG1GC",
            "-XX:MaxGCPauseMillis=20",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={self.data_dir / 'log4j2.properties'}",
            "-cp",
            classpath,
            main_class,
            *args,
        ]

    def _prepare(self) -> Path:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        (self.data_dir / "log4j2.properties").write_text(
            _LOG4J2.format(log_file=self.log_file, level="INFO")
        )
        properties = self.data_dir / "server.properties"
        properties.write_text("".join(f"{k}={v}\n" for k, v in self._config().items()))
        if not (self.data_dir / "log" / "meta.properties").is_file():
            argv = self._java(
                "kafka.tools.StorageTool", "format", "-t", _cluster_id(), "-c", str(properties)
            )
            result = subprocess.run(argv, capture_output=True, text=True, check=False)
            if result.returncode != 0:
                raise EngineSetupError(
                    f"kafka storage format failed:\n{result.stdout}{result.stderr}"
                )
        return properties

    @property
    def running(self) -> bool:
        """Whether the broker process is alive."""
        return self._process is not None and self._process.poll() is None

    def start(self, timeout: float = 60.0) -> None:
        """Start the broker and return once it serves metadata requests."""
        if self.running:
            return
        properties = self._prepare()
        stdout = (self.data_dir / "stdout.log").open("ab")
        self._process = subprocess.Popen(
            self._java("kafka.Kafka", str(properties)),
            stdout=stdout,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        stdout.close()
        self._wait_ready(timeout)

    def _wait_ready(self, timeout: float) -> None:
        from confluent_kafka.admin import AdminClient  # noqa: PLC0415 - optional heavy import

        admin = AdminClient({"bootstrap.servers": self.bootstrap, "log_level": 0})
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.running:
                raise EngineSetupError(f"Kafka exited during start-up; see {self.log_file}")
            try:
                metadata = admin.list_topics(timeout=1.0)
            except Exception:
                time.sleep(0.2)
                continue
            if metadata.brokers:
                return
        self.stop()
        raise EngineSetupError(f"Kafka not ready after {timeout:.0f} s; see {self.log_file}")

    def stop(self, timeout: float = 30.0) -> None:
        """Stop the broker (controlled shutdown; killed if it does not finish in time)."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=timeout)

    def create_topic(
        self,
        name: str,
        partitions: int = 4,
        config: Mapping[str, str] | None = None,
        timeout: float = 30.0,
    ) -> None:
        """Create a topic (replication factor 1) and wait until it exists."""
        from confluent_kafka.admin import AdminClient  # noqa: PLC0415
        from confluent_kafka.cimpl import NewTopic  # noqa: PLC0415

        admin = AdminClient({"bootstrap.servers": self.bootstrap})
        topic = NewTopic(
            name, num_partitions=partitions, replication_factor=1, config=dict(config or {})
        )
        futures = admin.create_topics([topic], operation_timeout=timeout)
        futures[name].result(timeout=timeout)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            metadata = admin.list_topics(topic=name, timeout=timeout)
            described = metadata.topics.get(name)
            if (
                described is not None
                and described.error is None
                and len(described.partitions) == partitions
                and all(p.leader >= 0 for p in described.partitions.values())
            ):
                return
            time.sleep(0.1)
        raise EngineSetupError(f"topic {name} has no leaders after {timeout:.0f} s")

    def read_topic(self, topic: str) -> list[tuple[bytes | None, bytes | None]]:
        """Every record of ``topic`` as (key, value), each partition in order: read from
        the beginning until nothing more has come for 2 s (5 s before the first)."""
        from confluent_kafka import Consumer  # noqa: PLC0415 - the client only where read

        consumer = Consumer(
            {
                "bootstrap.servers": self.bootstrap,
                "group.id": f"verify-{time.monotonic_ns()}",
                "auto.offset.reset": "earliest",
                "enable.partition.eof": True,
            }
        )
        consumer.subscribe([topic])
        records: list[tuple[bytes | None, bytes | None]] = []
        idle_until = time.monotonic() + 5
        try:
            while time.monotonic() < idle_until:
                message = consumer.poll(0.2)
                if message is None or message.error() is not None:
                    continue
                records.append((message.key(), message.value()))
                idle_until = time.monotonic() + 2
        finally:
            consumer.close()
        return records

    def __enter__(self) -> KafkaBroker:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> int:
    """``python -m meterplane.testing.engines setup``: install every engine, print timings."""
    args = sys.argv[1:] if argv is None else argv
    if args != ["setup"]:
        print("usage: python -m meterplane.testing.engines setup", file=sys.stderr)
        return 2
    for name, step in (
        ("kafka jars", ensure_kafka_jars),
        ("flink kafka connector", ensure_flink_connector_jar),
        (".flink-venv", ensure_flink_venv),
    ):
        started = time.monotonic()
        location = step()
        print(f"engines-setup: {name} ready at {location} ({time.monotonic() - started:.1f} s)")
    return 0


class ManagedProcess:
    """A child process in its own session, logged to a file, stopped by process group."""

    def __init__(self, argv: Sequence[str], log_file: Path, env: Mapping[str, str]) -> None:
        self.argv = list(argv)
        self.log_file = log_file
        self.env = dict(env)
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start the process (output appended to ``log_file``)."""
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        with self.log_file.open("ab") as log:
            self.process = subprocess.Popen(
                self.argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env,
                start_new_session=True,
            )

    @property
    def running(self) -> bool:
        """Whether the process is alive."""
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL the whole process group (a crash: nothing gets to clean up)."""
        self._signal(signal.SIGKILL, timeout=30)

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM the process group; SIGKILL it if it has not exited after ``timeout``."""
        self._signal(signal.SIGTERM, timeout)

    def _signal(self, sig: signal.Signals, timeout: float) -> None:
        process, self.process = self.process, None
        if process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=30)

    def output(self) -> str:
        """Everything the process wrote so far."""
        return self.log_file.read_text(errors="replace") if self.log_file.exists() else ""


def flink_job(
    work_dir: Path,
    bootstrap: str,
    *,
    events_topic: str = "events",
    counters_topic: str = "counters",
    catalog: Path | None = None,
    mini_batch_ms: int = 100,
    checkpoint_interval_ms: int = 1000,
    extra_args: Sequence[str] = (),
) -> ManagedProcess:
    """The aggregation job in PyFlink local mode, checkpointing under ``work_dir``."""
    argv = [
        str(ensure_flink_venv()),
        "-m",
        "meterplane_flink.job",  # as the operator runs it: -pym meterplane_flink.job
        "--bootstrap",
        bootstrap,
        "--events-topic",
        events_topic,
        "--counters-topic",
        counters_topic,
        "--checkpoint-dir",
        str(work_dir / "checkpoints"),
        "--checkpoint-interval-ms",
        str(checkpoint_interval_ms),
        "--mini-batch-ms",
        str(mini_batch_ms),
        "--connector-jar",
        str(ensure_flink_connector_jar()),
        *(["--catalog", str(catalog)] if catalog is not None else []),
        *extra_args,
    ]
    return ManagedProcess(argv, work_dir / "job.log", flink_env(work_dir / "flink-logs"))


def completed_checkpoints(work_dir: Path) -> list[int]:
    """Numbers of the completed checkpoints of a :func:`flink_job` (any job id), sorted."""
    done = (work_dir / "checkpoints").glob("*/chk-*/_metadata")
    return sorted(int(p.parent.name.removeprefix("chk-")) for p in done)


def meterplane_service(
    command: str,
    work_dir: Path,
    bootstrap: str,
    api_key: str,
    *,
    catalog: Path | None = None,
    port: int | None = None,
    extra_args: Sequence[str] = (),
) -> tuple[ManagedProcess, str]:
    """``meterplane ingest|entitlements`` on a free loopback port; returns it and its URL."""
    port = port or free_port()
    env = dict(
        os.environ,
        METERPLANE_API_KEYS=api_key,
        METERPLANE_KAFKA_BOOTSTRAP=bootstrap,
        METERPLANE_HTTP_HOST="127.0.0.1",
        METERPLANE_HTTP_PORT=str(port),
        METERPLANE_LOG_LEVEL="WARNING",
    )
    if catalog is not None:
        env["METERPLANE_CATALOG"] = str(catalog)
    meterplane = Path(sys.executable).parent / "meterplane"
    argv = [str(meterplane), command, *extra_args]
    return ManagedProcess(argv, work_dir / f"{command}-{port}.log", env), f"http://127.0.0.1:{port}"


def wait_ready(url: str, process: ManagedProcess, timeout: float = 60.0) -> None:
    """Poll ``{url}/readyz`` until it answers 200 (fails early if the process died)."""
    import httpx  # noqa: PLC0415 - only the harness needs it

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not process.running:
            raise EngineSetupError(f"{process.argv[1]} exited:\n{process.output()[-3000:]}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return
        time.sleep(0.2)
    raise EngineSetupError(f"{url} not ready after {timeout:.0f} s:\n{process.output()[-3000:]}")


if __name__ == "__main__":
    raise SystemExit(main())
