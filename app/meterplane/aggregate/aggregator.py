"""The embedded aggregator: tails the durable log, drops duplicates, updates counters.

Order of durable effects at each checkpoint (the lesson of OpenMeter's lost-usage
report: never mark anything done before its effect is stored):
1. insert the raw rows processed since the last checkpoint (idempotent: one row per
   identity, and a replayed row is identical, log position included);
2. write the changed counters to the ``counters`` table (versioned by log position);
3. atomically replace ``checkpoint.msgpack`` = {log position, every counter's state};
4. only then let the log drop segments below that position.
After a SIGKILL, recovery loads the checkpoint, rebuilds the dedup set from the stored
rows below its position, and replays the log from there: every acked item is counted
once, whatever instant the process died at.
"""

from __future__ import annotations

import logging
import threading
import time
from array import array
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from sys import intern
from typing import Any

import msgspec
import numpy as np
import pyarrow as pa

from meterplane.aggregate.dedup import new_window
from meterplane.aggregate.native import NativeCounting, Scan, core
from meterplane.core import metrics
from meterplane.core.catalog import Catalog
from meterplane.core.counters import CounterBook, Outcome, settle_before
from meterplane.core.files import write_atomic
from meterplane.core.model import EventBatch, UsageBatch
from meterplane.core.storage import (
    ARROW_TYPES,
    COUNTER_COLUMNS,
    EVENT_COLUMNS,
    SqlEngine,
    to_arrow,
)
from meterplane.core.threads import NamedThread
from meterplane.core.timeutil import EPOCH, ONE_US, US_PER_S, now_us
from meterplane.ingest.buffer import KIND_EVENTS, Frame, LocalLog

log = logging.getLogger(__name__)
CHECKPOINT_FILE = "checkpoint.msgpack"
_encode_lines = msgspec.json.Encoder().encode_lines
_NEWLINE = ord("\n")
_MAX_BINARY_BYTES = 2**31 - 1  # an Arrow binary array's 32-bit offsets
_STRING_COLUMNS = ("customer_id", "idempotency_key", "name", "resource_id")
# Bodies of frames ingest has just written, kept for the aggregator to take from memory.
OFFERED_BYTES = 32 * 1024 * 1024
RETIRE_INTERVAL_S = 60.0  # how often checkpoints settle and retire (CounterBook)


class Checkpoint(msgspec.Struct):
    """What survives a restart: the log position and the counters' state at it."""

    pos: int
    counters: list[list[Any]]
    format: int = 1
    retired_before: int = 0  # ``CounterBook.retired_before``: older periods are stored only


def write_checkpoint(state_dir: Path, cp: Checkpoint) -> None:
    """Replace the checkpoint atomically (write, fsync, rename, fsync the directory)."""
    write_atomic(state_dir / CHECKPOINT_FILE, msgspec.msgpack.encode(cp))


def read_checkpoint(state_dir: Path) -> Checkpoint | None:
    """The last checkpoint, or None on a fresh data directory."""
    path = state_dir / CHECKPOINT_FILE
    if not path.exists():
        return None
    return msgspec.msgpack.decode(path.read_bytes(), type=Checkpoint)


def counter_rows(book: CounterBook, keys: Any, version: int) -> dict[str, list[Any]]:
    """Column-wise rows of the ``counters`` table for the given counter keys."""
    cols: dict[str, list[Any]] = {n: [] for n in COUNTER_COLUMNS}
    t = now_us()
    for ck in keys:
        customer, feature, start, resource = ck
        end = book.period_end[ck]
        value = book.counters[ck].value()
        cols["customer_id"].append(customer)
        cols["feature_id"].append(feature)
        cols["period_start"].append(start)
        cols["resource_id"].append(resource)
        cols["period_end"].append(end)
        cols["value"].append(None if value is None else float(value))
        cols["updated_at"].append(t)
        cols["version"].append(version)
    return cols


# customer ids, idempotency keys, names, timestamps, resource ids of a frame's new items
_Columns = tuple[list[str], list[str], list[str], list[int], list[str]]


class RawRows:
    """The raw rows applied since the last checkpoint, kept as cheaply as they can be:
    what is the same for a whole frame (kind, time of receipt, log position) once per
    frame, payloads as one JSON-lines encoding per frame, timestamps in a C array. They
    become Arrow columns at the checkpoint (``columns``) in a few calls per frame instead
    of one Python object per row and column (that took about a quarter of the aggregator's
    time on the interpreter lock)."""

    def __init__(self) -> None:
        self.n = 0
        self.strings: dict[str, list[str]] = {c: [] for c in _STRING_COLUMNS}
        # the string columns so far as Arrow arrays, in frame order (``strings`` follows)
        self.chunks: dict[str, list[pa.Array]] = {c: [] for c in _STRING_COLUMNS}
        self.stamps: list[bytes] = []  # int64 per row, a chunk per frame (joined once)
        self.frames: dict[str, list[Any]] = {"kind": [], "ingested_at": [], "log_pos": []}
        self.counts: list[int] = []
        self.payloads: list[pa.Array] = []
        self.payload_bytes = 0

    def add(self, frame: Frame, kind: str, new: Sequence[Any], columns: _Columns) -> None:
        """Queue a frame's first copies (``columns`` describe them, in order)."""
        customers, keys, names, stamps, resources = columns
        if not new:
            return
        for name, values in zip(_STRING_COLUMNS, (customers, keys, names, resources), strict=True):
            self.strings[name] += values
        self.stamps.append(array("q", stamps).tobytes())
        self.frames["kind"].append(kind)
        self.frames["ingested_at"].append(frame.received_us)
        self.frames["log_pos"].append(frame.pos)
        self.counts.append(len(new))
        lines = _encode_lines(new)
        self.payloads.append(json_lines_array(lines))
        self.payload_bytes += len(lines)
        self.n += len(new)

    def add_scanned(
        self, frame: Frame, n: int, columns: Sequence[tuple[bytes, bytes]], stamps: bytes
    ) -> None:
        """Queue an event frame's first copies as ``_native.scan_events`` built them:
        (offsets, data) of the string columns and the payloads, int64 timestamps."""
        if not n:
            return
        self._flush_strings()
        for name, (offsets, data) in zip(_STRING_COLUMNS, columns, strict=False):
            self.chunks[name].append(_arrow_column(pa.string(), n, offsets, data))
        offsets, data = columns[len(_STRING_COLUMNS)]
        self.payloads.append(_arrow_column(pa.binary(), n, offsets, data))
        self.payload_bytes += len(data)
        self.stamps.append(stamps)
        self.frames["kind"].append("event")
        self.frames["ingested_at"].append(frame.received_us)
        self.frames["log_pos"].append(frame.pos)
        self.counts.append(n)
        self.n += n

    def _flush_strings(self) -> None:
        if self.strings["customer_id"]:
            for name, values in self.strings.items():
                self.chunks[name].append(pa.array(values, pa.string()))
            self.strings = {c: [] for c in _STRING_COLUMNS}

    def columns(self) -> dict[str, Any]:
        """The rows as Arrow columns, in ``EVENT_COLUMNS`` order."""
        per_frame = to_arrow(self.frames)
        rows = pa.array(np.repeat(np.arange(len(self.counts)), self.counts))
        self._flush_strings()
        cols: dict[str, Any] = {n: pa.concat_arrays(self.chunks[n]) for n in _STRING_COLUMNS}
        cols.update({n: per_frame.column(n).take(rows) for n in self.frames})
        stamps = np.frombuffer(b"".join(self.stamps), np.int64)
        cols["timestamp"] = pa.array(stamps, ARROW_TYPES["timestamp"])
        # One array, not a chunk per frame: chdb inserts chunked columns at a higher cost.
        # Past 2 GiB of payloads one binary array cannot address them: chunks it is then.
        if self.payload_bytes < _MAX_BINARY_BYTES:
            cols["payload"] = pa.concat_arrays(self.payloads)
        else:
            cols["payload"] = pa.chunked_array(self.payloads, pa.binary())
        return {n: cols[n] for n in EVENT_COLUMNS}


def _arrow_column(kind: pa.DataType, n: int, offsets: Any, data: Any) -> pa.Array:
    return pa.Array.from_buffers(kind, n, [None, pa.py_buffer(offsets), pa.py_buffer(data)])


def json_lines_array(lines: bytes) -> pa.Array:
    """``msgspec``'s JSON lines (one document per line) as an Arrow binary array of the
    documents. JSON text never holds a raw newline, so every newline ends a document."""
    ends = np.flatnonzero(np.frombuffer(lines, np.uint8) == _NEWLINE)
    offsets = np.empty(len(ends) + 1, np.int32)
    offsets[0] = 0
    offsets[1:] = ends - np.arange(len(ends))  # each end, less the newlines before it
    data = lines.replace(b"\n", b"")
    return _arrow_column(pa.binary(), len(ends), offsets, data)


class Aggregator:
    """Counts what the log holds; one thread; state readable by the decision path."""

    def __init__(
        self,
        log_: LocalLog,
        engine: SqlEngine,
        catalog: Catalog,
        state_dir: Path,
        dedup_window_s: float = 86_400,
        checkpoint_interval_s: float = 1.0,
        checkpoint_rows: int = 200_000,
        lateness_days: float = 35.0,
    ) -> None:
        self.log = log_
        self.engine = engine
        self.book = CounterBook(catalog)
        self.state_dir = state_dir
        self.window_us = int(dedup_window_s * US_PER_S)
        self.lateness_us = int(lateness_days * 86_400 * US_PER_S)
        self._latest_received = 0  # the latest time of receipt among the frames applied
        self._last_retire = 0.0
        self.checkpoint_interval_s = checkpoint_interval_s
        self.checkpoint_rows = checkpoint_rows
        self.pos = 0
        self._checkpointed = -1  # nothing written yet: the first checkpoint always writes
        self.dedup = new_window()
        self._native = None if core is None else NativeCounting(self.book)
        # first copies of events counted by the native core, and by the Python path
        self.counted_by = {"native": 0, "python": 0}
        self._raw = RawRows()
        self._last_checkpoint = time.monotonic()
        self._stop = threading.Event()
        # held while frames are applied or checkpointed: by the thread, or by ``drain``
        self._working = threading.Lock()
        self._thread: threading.Thread | None = None
        self._listeners: list[Callable[[], None]] = []
        # frame end -> the items ingest already decoded (bounded; a miss just decodes).
        self._hints: dict[int, Sequence[Any]] = {}
        # frames just written, in log order and contiguous (see ``offer``)
        self._offered: deque[Frame] = deque()
        self._offered_lock = threading.Lock()
        self.error: BaseException | None = None

    # ------------------------------------------------------------------ lifecycle

    def recover(self) -> None:
        """Load the checkpoint and the dedup set; the log is replayed from there by ``run``."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        cp = read_checkpoint(self.state_dir)
        if cp is not None:
            self.book.restore(cp.counters, cp.retired_before)
            self.pos = cp.pos
        self.pos = max(self.pos, self.log.consumed)
        self.log.consumed = self.log.processed = self.pos
        cutoff = now_us() - self.window_us
        sql = (
            "SELECT customer_id, idempotency_key, toUnixTimestamp64Micro(ingested_at) AS t "
            f"FROM events WHERE log_pos < {int(self.pos)} AND ingested_at >= "
            f"fromUnixTimestamp64Micro({int(cutoff)}, 'UTC') ORDER BY ingested_at"
        )
        table = self.engine.query_arrow(sql)
        if table.num_rows:
            self.dedup = new_window()
            self.dedup.load(
                table.column("customer_id").to_pylist(),
                table.column("idempotency_key").to_pylist(),
                table.column("t").to_pylist(),
            )

    def start(self) -> None:
        """Recover, then run in a background thread."""
        self.recover()
        self._thread = NamedThread(target=self._run, name="aggregator", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Process what is durable, checkpoint, stop."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=60)
        if self.error is None:
            self.drain()

    def drain(self) -> None:
        """Process everything durable now and checkpoint (used at shutdown and in tests);
        safe beside the running thread, which waits meanwhile."""
        with self._working:
            while self.step():
                pass
            self.checkpoint()

    def on_change(self, fn: Callable[[], None]) -> None:
        """Call ``fn`` (in the aggregator thread) after each applied batch."""
        self._listeners.append(fn)

    def offer(self, frame: Frame, items: Sequence[Any] | None = None) -> None:
        """A frame ingest has just written to the log, and its decoded ``items`` (called in
        log order; an optimisation only: what is not offered is read from the log).

        The frame is kept (up to ``OFFERED_BYTES`` of bodies) so that this thread need not
        read it back: a read from the log is several system calls per frame, each one
        letting go of the interpreter lock and taking it back from the request thread,
        and a fresh copy of the body. The items are kept only where the Python path will
        read them: event frames go to the native core, which reads the body itself, and
        keeping their items until then would only move their freeing, with the lock and
        out of the cache, from the request thread to this one."""
        with self._offered_lock:
            q = self._offered
            if not q or (q[-1].end == frame.pos and frame.end - q[0].pos <= OFFERED_BYTES):
                q.append(frame)
        python_reads = frame.kind != KIND_EVENTS or self._native is None
        if items is not None and python_reads and len(self._hints) < 4096:
            self._hints[frame.end] = items

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                with self._working:
                    applied = self.step(max_frames=8)
                    if (
                        time.monotonic() - self._last_checkpoint >= self.checkpoint_interval_s
                        or self._raw.n >= self.checkpoint_rows
                    ):
                        self.checkpoint()
                if not applied:
                    self.log.wait_for_data(self.pos, timeout=0.1)
                elif self.log.acks_waiting():
                    # Acks first: ingest and this thread share one GIL, and an ack is a
                    # client waiting. Counting catches up between bursts; the bounded
                    # backlog (503 past it) keeps "behind" from becoming "unbounded".
                    time.sleep(0.001)
        except BaseException as err:  # the thread must report, not vanish
            self.error = err
            log.exception("aggregator stopped")

    # ------------------------------------------------------------------ work

    def step(self, max_frames: int | None = None) -> int:
        """Apply the durable frames past ``pos``; return how many frames were applied."""
        n = 0
        for frame in self._frames(max_frames):
            self._apply(frame)
            self.pos = frame.end
            self._latest_received = max(self._latest_received, frame.received_us)
            n += 1
            if max_frames is not None and n >= max_frames:
                break
        if n:
            self.log.processed = self.pos
            metrics.BACKLOG.set(self.log.durable_end - self.pos)
            for fn in self._listeners:
                fn()
        return n

    def _frames(self, max_frames: int | None) -> Iterable[Frame]:
        """The durable frames from ``pos`` on: those offered, while they continue the log
        exactly there; else (a frame not offered) from the log itself."""
        with self._offered_lock:
            q = self._offered
            while q and q[0].pos < self.pos:  # read from the log meanwhile
                q.popleft()
            durable = self.log.durable_end
            if not q or q[0].pos != self.pos:
                return self.log.read(self.pos) if self.pos < durable else ()
            taken = list[Frame]()
            while q and q[0].end <= durable and len(taken) != max_frames:
                taken.append(q.popleft())
            return taken

    def _apply(self, frame: Frame) -> None:
        """Dedupe a frame's items, count the new ones, and queue their raw rows."""
        out = Outcome()
        received = frame.received_us
        hinted = self._hints.pop(frame.end, None)
        if frame.kind == KIND_EVENTS and self._native is not None:
            meters = self._native.sync()
            scan = core.scan_events(self.dedup, frame.body, received, meters)
            if scan is not None:  # else a shape the scan leaves to the Python path below
                self._apply_scanned(frame, Scan._make(scan), out)
                return
        if frame.kind == KIND_EVENTS:
            items: Sequence[Any] = hinted or msgspec.json.decode(frame.body, type=EventBatch).events
            keys = [ev.idempotencyKey for ev in items]
            names = [ev.eventName for ev in items]
            kind = "event"
        else:
            items = hinted or msgspec.json.decode(frame.body, type=UsageBatch).usages
            # A report without a key gets one from its place in the log: replay-stable.
            keys = [u.idempotencyKey or f"~{frame.pos}:{i}" for i, u in enumerate(items)]
            names = [u.featureId for u in items]
            kind = "usage"
        # One string object per customer id, not one per event: the dedup set keeps them.
        customers = [intern(it.customerId) for it in items]
        fresh = self.dedup.admit(customers, keys, received)
        n = len(fresh)
        new: Sequence[Any] = items
        if n < len(items):  # duplicates: keep only the first copies (most batches have none)
            new = [items[i] for i in fresh]
            customers = [customers[i] for i in fresh]
            keys = [keys[i] for i in fresh]
            names = [names[i] for i in fresh]
        epoch, one_us = EPOCH, ONE_US  # ``to_us`` inlined (ingest validated: all aware)
        stamps = [received if (t := it.timestamp) is None else (t - epoch) // one_us for it in new]
        resources = [it.resourceId or "" for it in new]
        book = self.book
        if kind == "event":
            apply = book.apply_event
            for it, c, ts, res in zip(new, customers, stamps, resources, strict=True):
                apply(c, it.eventName, it.idempotencyKey, ts, it.dimensions, res, out)
        else:
            usages = zip(new, customers, keys, names, stamps, resources, strict=True)
            for it, c, k, f, ts, res in usages:
                book.apply_usage(c, f, k, ts, it.value, it.updateBehavior == "SET", res, out)
        self._raw.add(frame, kind, new, (customers, keys, names, stamps, resources))
        self._report(out, len(items) - n)

    def _apply_scanned(self, frame: Frame, scan: Scan, out: Outcome) -> None:
        """Finish an event frame that ``_native.scan_events`` deduped (its identities are
        admitted), counted (but for the events it left to this path) and turned into
        raw-row columns."""
        assert self._native is not None
        self._native.merge(scan.parts)
        out.applied += scan.applied
        out.unmetered += scan.unmetered
        stamps = scan.stamps
        if scan.to_python or scan.unparsed:
            stamps = self._apply_left(frame, scan, out)
        m = len(scan.customers)
        self.counted_by["native"] += m - len(scan.to_python)
        self.counted_by["python"] += len(scan.to_python)
        self._raw.add_scanned(frame, m, scan.columns, stamps)
        self._report(out, scan.n - m)

    @staticmethod
    def _report(out: Outcome, duplicates: int) -> None:
        metrics.DUPLICATES.inc(duplicates)
        metrics.UNMETERED.inc(out.unmetered)
        metrics.AGGREGATED.inc(out.applied)
        if out.retired:
            metrics.PAST_RETIRED.inc(out.retired)
            log.warning(
                "%d count(s) fell in periods already retired and were not counted; "
                "run `meterplane rebuild --apply` to count them",
                out.retired,
            )

    def _apply_left(self, frame: Frame, scan: Scan, out: Outcome) -> bytes:
        """Count the events the scan left to Python and read the timestamps it left;
        return the frame's timestamps, complete."""
        items: Sequence[Any] = msgspec.json.decode(frame.body, type=EventBatch).events
        if len(items) != scan.n:  # the scan and msgspec read the body alike, or this is a bug
            raise RuntimeError(f"frame at {frame.pos}: scanned {scan.n} events, read {len(items)}")
        new = items if scan.fresh is None else [items[i] for i in scan.fresh]
        stamps = array("q", scan.stamps)
        for i in scan.unparsed:  # a timestamp in a form the scan leaves to msgspec
            stamps[i] = (new[i].timestamp - EPOCH) // ONE_US
        apply, customers = self.book.apply_event, scan.customers
        for i in scan.to_python:
            it = new[i]
            res = it.resourceId or ""
            apply(customers[i], it.eventName, it.idempotencyKey, stamps[i], it.dimensions, res, out)
        return stamps.tobytes()

    def checkpoint(self) -> None:
        """Store rows, then counters, then the position; then release the log."""
        if self.pos == self._checkpointed and not self._raw.n and not self.book.dirty:
            self._last_checkpoint = time.monotonic()
            return  # nothing new: no write, no fsync, no pause for the request path
        with metrics.CHECKPOINT_SECONDS.time():
            if self._raw.n:
                self.engine.insert("events", self._raw.columns())
                self._raw = RawRows()
            if self.book.dirty:
                dirty, self.book.dirty = self.book.dirty, set()
                self.engine.insert("counters", counter_rows(self.book, dirty, self.pos))
            if self._latest_received:
                self._settle_and_retire(settle_before(self._latest_received, self.lateness_us))
            cp = Checkpoint(self.pos, self.book.snapshot(), retired_before=self.book.retired_before)
            write_checkpoint(self.state_dir, cp)
            self._checkpointed = self.pos
            self.log.release(self.pos)
            self._evict_seen()
        self._last_checkpoint = time.monotonic()

    def _settle_and_retire(self, before: int) -> None:
        """Settle usage DELTAs and retire final periods' counters (just stored above), at
        most once a minute: each walks every counter, and a minute's delay in bounding
        state kept for 36 days changes nothing."""
        now = time.monotonic()
        if now - self._last_retire >= RETIRE_INTERVAL_S:
            self._last_retire = now
            self.book.settle(before)
            self.book.retire(before)

    def _evict_seen(self) -> None:
        """Forget identities that arrived before the dedup window."""
        self.dedup.forget_before(now_us() - self.window_us)
