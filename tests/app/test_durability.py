"""Acked means durable: a ``serve`` process killed with SIGKILL loses and doubles nothing."""

from __future__ import annotations

import asyncio
import errno
import json
import os
import threading
import time
from pathlib import Path

import httpx
import pytest
from rich.console import Console

from meterplane.aggregate.aggregator import read_checkpoint, write_checkpoint
from meterplane.commands.rebuild import rebuild
from meterplane.core.catalog import load_catalog
from meterplane.core.counters import CounterBook
from meterplane.core.errors import BufferUnavailable
from meterplane.ingest.buffer import HEADER, LocalLog
from meterplane.localplane import ServeProcess
from tests import aio
from tests.app.conftest import API_KEY

pytestmark = pytest.mark.slow


class Serve(ServeProcess):
    """``serve`` with a short checkpoint interval, so kills land at every phase of it."""

    def __init__(self, data_dir: Path) -> None:
        super().__init__(data_dir, API_KEY, env={"METERPLANE_CHECKPOINT_INTERVAL_S": "0.3"})

    def start(self, timeout: float = 60) -> httpx.Client:  # type: ignore[override]
        super().start(timeout)
        return self.client()

    def stop(self, timeout: float = 60) -> int:
        code = super().stop(timeout)
        assert code == 0
        return code


def _batch(start: int, n: int) -> bytes:
    return json.dumps(
        {
            "events": [
                {"customerId": "acme", "eventName": "api_call", "idempotencyKey": f"k{i}"}
                for i in range(start, start + n)
            ]
        }
    ).encode()


def _usage(client: httpx.Client) -> int:
    r = client.get(
        "/api/v1/customers/acme/entitlements/check",
        params={"featureId": "api-calls", "requestedUsage": 0},
    )
    return int(r.json()["currentUsage"])


def test_sigkill_after_202_loses_nothing_and_counts_nothing_twice(tmp_path: Path) -> None:
    serve = Serve(tmp_path / "data")
    acked = 0
    next_key = 0
    # Several rounds: kill at once after a 202, at different points of the checkpoint cycle,
    # and resend the last batch after each restart as a client retrying would.
    for round_ in range(4):
        client = serve.start()
        if round_:
            assert (
                client.post("/api/v1/events", content=_batch(next_key - 500, 500)).status_code
                == 202
            )
        for _ in range(3 + round_):
            r = client.post("/api/v1/events", content=_batch(next_key, 500))
            assert r.status_code == 202
            acked += 500
            next_key += 500
        time.sleep(0.1 * round_)
        serve.kill()
        client.close()
    client = serve.start()
    deadline = time.monotonic() + 20
    while _usage(client) != acked and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _usage(client) == acked
    serve.stop()
    client.close()
    # Recomputing every counter from the raw rows finds no drift.
    assert rebuild(tmp_path / "data", None, apply=False, console=Console(quiet=True)) == 0
    cp = read_checkpoint(tmp_path / "data" / "state")
    assert cp is not None
    book = CounterBook(load_catalog())
    book.restore(cp.counters)
    assert sum(v for k, _, v in book.items() if k[1] == "api-calls" and k[3] == "") == acked


def test_torn_tail_is_truncated_on_open(tmp_path: Path) -> None:
    log = LocalLog(tmp_path / "log")
    end = log.append_sync(1, 1, b'{"events": []}')
    log.close()
    seg = next((tmp_path / "log").glob("*.log"))
    with seg.open("ab") as f:  # a crash in the middle of the next frame
        f.write(HEADER.pack(b"MPL1", 1, 2, 1000, 0) + b"partial")
    log = LocalLog(tmp_path / "log")
    try:
        assert log.durable_end == end
        assert [f.end for f in log.read(0)] == [end]
    finally:
        log.close()


def test_a_write_that_fails_halfway_leaves_no_torn_frame_between_whole_ones(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = LocalLog(tmp_path / "log")
    first = log.append_sync(1, 1, b'{"events": [1]}')
    real_writev = os.writev

    def disk_full_halfway(fd: int, buffers: list[bytes]) -> int:
        data = b"".join(buffers)
        os.write(fd, data[: len(data) // 2])  # the disk fills up mid-frame
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "writev", disk_full_halfway)
    with pytest.raises(BufferUnavailable, match="No space left"):
        log.write(1, 2, b'{"events": [2, 2]}')
    monkeypatch.setattr(os, "writev", real_writev)
    last = log.append_sync(1, 3, b'{"events": [3, 3, 3]}')
    try:
        assert [(f.pos, f.received_us, f.body) for f in log.read(0)] == [
            (0, 1, b'{"events": [1]}'),
            (first, 3, b'{"events": [3, 3, 3]}'),
        ]
    finally:
        log.close()
    log = LocalLog(tmp_path / "log")  # and nothing to cut when it is opened again
    try:
        assert log.durable_end == last
    finally:
        log.close()


def test_rebuild_apply_repairs_drift(tmp_path: Path) -> None:
    serve = Serve(tmp_path / "data")
    client = serve.start()
    assert client.post("/api/v1/events", content=_batch(0, 300)).status_code == 202
    deadline = time.monotonic() + 10
    while _usage(client) != 300 and time.monotonic() < deadline:
        time.sleep(0.05)
    serve.stop()
    client.close()
    state = tmp_path / "data" / "state"
    cp = read_checkpoint(state)
    assert cp is not None
    # Corrupt the live counters as a bug would: every COUNT doubled.
    for row in cp.counters:
        if row[5] == "COUNT":
            row[6] = [row[6][0] * 2]

    write_checkpoint(state, cp)
    quiet = Console(quiet=True)
    assert rebuild(tmp_path / "data", None, apply=False, console=quiet) == 1
    assert rebuild(tmp_path / "data", None, apply=True, console=quiet) == 0
    assert rebuild(tmp_path / "data", None, apply=False, console=quiet) == 0
    client = serve.start()
    assert _usage(client) == 300
    serve.stop()
    client.close()


def test_a_batch_synced_just_before_its_request_waits_is_acked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The fsync covering a batch may finish between the request's first look at
    ``durable_end`` and its joining the waiters: that request must be answered, not left
    waiting for an fsync that nothing else will start (a lost wakeup: the last batch of a
    burst hung until the client timed out)."""
    log = LocalLog(tmp_path / "log")
    looked = threading.Event()
    real_sync = os.fdatasync

    def sync(fd: int) -> None:  # the fsync finishes only once the request has looked
        assert looked.wait(10)
        real_sync(fd)

    monkeypatch.setattr(os, "fdatasync", sync)
    end = log.write(1, 0, b"{}")
    cond, test_thread = log._cond, threading.current_thread()

    class LateToTheLock:
        """The request thread reaches the waiters' lock only after the fsync is done."""

        def __enter__(self) -> bool:
            if threading.current_thread() is test_thread:
                looked.set()
                deadline = time.monotonic() + 10
                while log.durable_end < end and time.monotonic() < deadline:
                    time.sleep(0.001)
            return cond.__enter__()

        def __exit__(self, *exc: object) -> None:
            cond.__exit__(*exc)

        def __getattr__(self, name: str) -> object:
            return getattr(cond, name)

    log._cond = LateToTheLock()  # type: ignore[assignment]
    try:
        aio.run(asyncio.wait_for(log.durable(end), timeout=5))
    finally:
        log._cond = cond
        log.close()
