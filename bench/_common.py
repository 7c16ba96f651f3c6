"""Shared pieces of the benchmarks: the Go load generator, a ``serve`` process, stats."""

from __future__ import annotations

import json
import os
import statistics
import struct
import subprocess
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from meterplane.localplane import ServeProcess

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / ".cache"
LOADGEN = CACHE / "bin" / "loadgen"


def loadgen() -> Path:
    """Build the Go load generator (stdlib only) once; return its path."""
    src = ROOT / "bench" / "loadgen"
    newest = max(p.stat().st_mtime for p in src.iterdir())
    if not LOADGEN.exists() or LOADGEN.stat().st_mtime < newest:
        LOADGEN.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(["go", "build", "-o", str(LOADGEN), "."], cwd=src, check=True)
    return LOADGEN


def run_loadgen(*args: str) -> dict[str, Any]:
    """Run the load generator; return its JSON result."""
    out = subprocess.run([str(loadgen()), *args], check=True, capture_output=True, text=True)
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def write_bodies(path: Path, bodies: Sequence[bytes]) -> None:
    """Bodies for ``loadgen post``: each prefixed by its 4-byte big-endian length."""
    with path.open("wb") as f:
        for b in bodies:
            f.write(struct.pack(">I", len(b)))
            f.write(b)


@contextmanager
def serve(data_dir: Path, script: str | None = None, **env: str) -> Iterator[tuple[str, str, int]]:
    """A ``meterplane serve`` process (or a benchmark's variant of it, ``bench/<script>``);
    yields (base URL, API key, pid)."""
    args = ("-m", "meterplane", "serve") if script is None else (str(ROOT / "bench" / script),)
    with ServeProcess(data_dir, env=env, args=args) as plane:
        assert plane.proc is not None
        yield plane.base_url, plane.api_key, plane.proc.pid


def _stat_cpu_s(path: str) -> float:
    with open(path) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def steal_s() -> float:
    """CPU seconds the hypervisor has taken from this machine so far, all CPUs together
    (the ``steal`` column of ``/proc/stat``; 0 where the kernel reports none)."""
    with open("/proc/stat") as f:
        fields = f.readline().split()
    return int(fields[8]) / os.sysconf("SC_CLK_TCK") if len(fields) > 8 else 0.0


@contextmanager
def stolen(shares: list[float]) -> Iterator[None]:
    """Append to ``shares`` the share of the machine's CPU time the hypervisor took while
    the block ran: the host's condition, which a latency or rate on a shared virtual
    machine cannot be read without."""
    steal, start = steal_s(), time.perf_counter()
    yield
    wall = time.perf_counter() - start
    shares.append((steal_s() - steal) / (wall * (os.cpu_count() or 1)))


def cpu_s(pid: int) -> float:
    """User + system CPU seconds a process has used so far (``/proc/<pid>/stat``)."""
    return _stat_cpu_s(f"/proc/{pid}/stat")


def thread_cpu_s(pid: int) -> dict[str, float]:
    """CPU seconds per thread name of a live process (the main thread as "main"); threads
    that share a name add up. ``serve`` names its threads (``core/threads.py``)."""
    out: dict[str, float] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            name = "main" if task.name == str(pid) else (task / "comm").read_text().strip()
            out[name] = out.get(name, 0.0) + _stat_cpu_s(str(task / "stat"))
        except FileNotFoundError:  # the thread ended meanwhile
            continue
    return out


def acked_events_per_s(res: dict[str, Any], batches: int, batch_size: int = 1000) -> float:
    """Events acked per second from a ``loadgen post`` result; every batch must be a 202."""
    ok = int(res["statuses"].get("202", 0))
    if ok != batches:
        raise SystemExit(f"only {ok}/{batches} batches acked: {res}")
    return ok * batch_size / float(res["seconds"])


def pct(values: Sequence[float], q: float) -> float:
    """The q-quantile (nearest rank) of ``values``."""
    s = sorted(values)
    return s[max(0, min(len(s) - 1, round(q * len(s)) - 1))]


def median(values: Sequence[float]) -> float:
    """The median."""
    return float(statistics.median(values))


def emit(result: dict[str, Any]) -> None:
    """The benchmark's result: one JSON object as the last line."""
    print(json.dumps(result, sort_keys=True))
