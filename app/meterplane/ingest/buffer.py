"""The embedded durable buffer: an append-only log on local disk with group commit.

Order of effects for one batch (DESIGN.md section 4, "Ack means durable"):
1. the request thread appends one frame (header + the body exactly as received) with
   ``write()`` under a lock, which returns the frame's end position;
2. the fsync thread ``fdatasync``s whatever has been written since its last sync, for
   every waiting request at once (group commit), then advances ``durable_end``;
3. only then does the request's future resolve and the HTTP layer send 202.
The aggregator takes only frames below ``durable_end`` (read back from the log, or the same
bytes as ingest offered them in memory), so nothing is counted that could vanish.

A frame is ``MPL1 | kind u8 | pad 3 | received_us i64 | length u32 | crc32 u32 | body``.
Positions are global byte offsets across segment files named by their base position. On
open, a torn tail (a frame cut short or failing its CRC: never acked) is truncated away.
"""

from __future__ import annotations

import asyncio
import fcntl
import itertools
import os
import struct
import threading
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from meterplane.core.errors import BufferUnavailable, DataDirInUse
from meterplane.core.threads import NamedThread

MAGIC = b"MPL1"
HEADER = struct.Struct("<4sB3xqII")
KIND_EVENTS = 1
KIND_USAGE = 2
SEGMENT_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True)
class Frame:
    """One appended batch: where it lies in the log, and what it holds."""

    pos: int
    end: int
    kind: int
    received_us: int
    body: bytes

    @classmethod
    def ending_at(cls, end: int, kind: int, received_us: int, body: bytes) -> Frame:
        """The frame ``write`` appended, from the end position it returned."""
        return cls(end - HEADER.size - len(body), end, kind, received_us, body)


def _segments(directory: Path) -> list[tuple[int, Path]]:
    out = []
    for p in directory.glob("*.log"):
        try:
            out.append((int(p.stem), p))
        except ValueError:
            continue
    return sorted(out)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _scan_valid(path: Path) -> int:
    """Length of the prefix of a segment made of whole frames with good CRCs."""
    size = path.stat().st_size
    good = 0
    with path.open("rb") as f:
        while good + HEADER.size <= size:
            f.seek(good)
            magic, _, _, length, crc = HEADER.unpack(f.read(HEADER.size))
            if magic != MAGIC or good + HEADER.size + length > size:
                break
            if zlib.crc32(f.read(length)) != crc:
                break
            good += HEADER.size + length
    return good


class LocalLog:
    """Append-only, fsync'd, segmented log. Thread-safe appends; one reader (the aggregator)."""

    def __init__(
        self,
        directory: Path,
        max_backlog_bytes: int = 256 * 1024 * 1024,
        segment_bytes: int = SEGMENT_BYTES,
    ) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self._lockfile = (directory / "LOCK").open("a")
        try:
            fcntl.flock(self._lockfile, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lockfile.close()
            raise DataDirInUse(
                f"{directory.parent} is in use by another meterplane process"
                " (one process per data directory: stop the other first)"
            ) from None
        self.max_backlog_bytes = max_backlog_bytes
        self.segment_bytes = segment_bytes
        segs = _segments(directory)
        if not segs:
            segs = [(0, directory / f"{0:020d}.log")]
            segs[0][1].touch()
        base, path = segs[-1]
        valid = _scan_valid(path)
        if valid != path.stat().st_size:
            os.truncate(path, valid)
        self._base = base
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND)
        self._size = valid
        self.written_end = base + valid
        self.durable_end = self.written_end
        self.consumed = segs[0][0]  # checkpointed by the aggregator: segments below may go
        self.processed = self.consumed  # applied by the aggregator: the backlog ends here
        self._lock = threading.Lock()
        self._cond = threading.Condition()
        self._waiters: list[tuple[int, asyncio.AbstractEventLoop, asyncio.Future[None]]] = []
        self._closed = False
        self._error: OSError | None = None
        self.fsyncs = 0  # how many syncs served all appends so far (group commit shows here)
        self._syncer = NamedThread(target=self._sync_loop, name="log-fsync", daemon=True)
        self._syncer.start()

    # ------------------------------------------------------------------ writing

    def acks_waiting(self) -> int:
        """Requests waiting for their batch to be fsync'd (ingest is busy right now)."""
        return len(self._waiters)

    def backlog(self) -> int:
        """Bytes acked or in flight that the aggregator has not yet processed."""
        return self.written_end - self.processed

    def write(self, kind: int, received_us: int, body: bytes) -> int:
        """Append one frame (not yet durable); return its end position."""
        if self._error is not None:
            raise BufferUnavailable(f"log write failed earlier: {self._error}", retry_after_s=5)
        if self.backlog() > self.max_backlog_bytes:
            raise BufferUnavailable(
                f"unprocessed backlog over {self.max_backlog_bytes} bytes", retry_after_s=1
            )
        header = HEADER.pack(MAGIC, kind, received_us, len(body), zlib.crc32(body))
        size = len(header) + len(body)
        with self._lock:
            if self._size and self._size + size > self.segment_bytes:
                self._roll()
            try:
                written = os.writev(self._fd, (header, body))  # no copy of the body to join them
                if written != size:  # a short write (a full disk): write the rest or fail
                    _write_all(self._fd, (header + body)[written:])
            except OSError as err:
                self._drop_partial()
                raise BufferUnavailable(
                    f"log write failed: {err.strerror}", retry_after_s=5
                ) from err
            self._size += size
            self.written_end += size
            end = self.written_end
        with self._cond:
            self._cond.notify_all()
        return end

    def _drop_partial(self) -> None:
        """Cut what a failed write left of its frame, so that the next frame follows the
        last whole one; if even that fails, take no more writes."""
        try:
            os.ftruncate(self._fd, self._size)
        except OSError as err:
            self._error = err

    def _roll(self) -> None:
        os.fsync(self._fd)  # rare; keeps "durable_end" true for the old segment
        os.close(self._fd)
        self._base = self.written_end
        path = self.directory / f"{self._base:020d}.log"
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        self._size = 0
        dir_fd = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    async def append(self, kind: int, received_us: int, body: bytes) -> int:
        """Append a batch and return once it is on disk (the only path to a 202)."""
        end = self.write(kind, received_us, body)
        await self.durable(end)
        return end

    async def durable(self, end: int) -> None:
        """Return once everything up to ``end`` is on disk."""
        if end <= self.durable_end:
            return
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        with self._cond:
            # Again under the lock: the sync that covers ``end`` may have finished since
            # the look above, and it answered only the waiters it found.
            if end <= self.durable_end:
                return
            self._waiters.append((end, loop, fut))
            self._cond.notify_all()
        await fut

    def append_sync(self, kind: int, received_us: int, body: bytes) -> int:
        """Blocking ``append`` for callers without an event loop (benchmarks, tools)."""
        end = self.write(kind, received_us, body)
        self.wait_durable(end)
        return end

    def wait_durable(self, end: int, timeout: float | None = None) -> bool:
        """Block until ``end`` is durable."""
        with self._cond:
            return self._cond.wait_for(lambda: self.durable_end >= end or self._closed, timeout)

    def _sync_loop(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self.written_end > self.durable_end or self._closed)
                if self._closed and self.written_end == self.durable_end:
                    return
            with self._lock:
                target, fd = self.written_end, self._fd
            try:
                os.fdatasync(fd)
                self.fsyncs += 1
            except OSError as err:
                self._error = err
                self._fail_waiters(err)
                return
            with self._cond:
                self.durable_end = target
                ready = [w for w in self._waiters if w[0] <= target]
                self._waiters = [w for w in self._waiters if w[0] > target]
                self._cond.notify_all()
            for _, loop, fut in ready:
                loop.call_soon_threadsafe(_resolve, fut)

    def _fail_waiters(self, err: OSError) -> None:
        with self._cond:
            waiters, self._waiters = self._waiters, []
            self._cond.notify_all()
        for _, loop, fut in waiters:
            exc = BufferUnavailable(f"fsync failed: {err.strerror}", retry_after_s=5)
            loop.call_soon_threadsafe(_reject, fut, exc)

    # ------------------------------------------------------------------ reading

    def wait_for_data(self, pos: int, timeout: float) -> bool:
        """Block until durable data exists beyond ``pos`` (or the timeout passes)."""
        with self._cond:
            return self._cond.wait_for(lambda: self.durable_end > pos or self._closed, timeout)

    def read(self, pos: int, limit_bytes: int = 8 * 1024 * 1024) -> Iterator[Frame]:
        """Durable frames from ``pos`` on, about ``limit_bytes`` at most."""
        end = self.durable_end
        read = 0
        for base, path in _segments(self.directory):
            seg_end = base + path.stat().st_size
            if seg_end <= pos or base >= end:
                continue
            with path.open("rb") as f:
                off = max(pos, base) - base
                while base + off < min(end, seg_end) and read < limit_bytes:
                    f.seek(off)
                    header = f.read(HEADER.size)
                    magic, kind, received_us, length, _ = HEADER.unpack(header)
                    if magic != MAGIC:
                        raise RuntimeError(f"corrupt log frame at {base + off} in {path}")
                    body = f.read(length)
                    start = base + off
                    off += HEADER.size + length
                    read += HEADER.size + length
                    yield Frame(start, base + off, kind, received_us, body)
            if read >= limit_bytes:
                return

    def release(self, upto: int) -> None:
        """The aggregator has checkpointed everything below ``upto``: drop whole segments."""
        self.consumed = max(self.consumed, upto)
        self.processed = max(self.processed, upto)
        segs = _segments(self.directory)
        for (base, path), (next_base, _) in itertools.pairwise(segs):
            if next_base <= upto and base != self._base:
                path.unlink(missing_ok=True)

    def close(self) -> None:
        """Flush, stop the fsync thread and release the directory."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._syncer.join(timeout=10)
        with self._lock:
            os.fsync(self._fd)
            os.close(self._fd)
        self.durable_end = self.written_end
        self._lockfile.close()


def _resolve(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


def _reject(fut: asyncio.Future[None], exc: BaseException) -> None:
    if not fut.done():
        fut.set_exception(exc)
