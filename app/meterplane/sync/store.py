"""The agent's durable state: one SQLite file (WAL, ``synchronous=FULL``: a commit is on
disk before it returns).

- ``meta``: the change cursor and the synced state, replaced together in one transaction
  *after* the records' effects were put in force (a crash in between replays the records,
  which is harmless: applying is idempotent, see ``state.py``);
- ``applied``: one row per change record applied or rejected (seq is the primary key, so a
  record can never be journaled twice);
- ``marks``: per (customer, feature, period start) the last revision and value put in the
  outbox, so revisions are monotone across restarts;
- ``crossings``: per period, how many times a limit was crossed and the limit usage is
  currently over (NULL when under);
- ``outbox``: rollups and lifecycle events not yet acknowledged by the control plane. A
  newer rollup revision replaces an unsent older one of the same period (the control plane
  keeps only the latest value anyway), so the outbox holds at most one rollup per period.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from meterplane.sync.state import SyncedState

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS applied (
    seq INTEGER PRIMARY KEY, change_id TEXT NOT NULL, type TEXT NOT NULL,
    outcome TEXT NOT NULL, applied_us INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS marks (
    customer TEXT NOT NULL, feature TEXT NOT NULL, period_start INTEGER NOT NULL,
    revision INTEGER NOT NULL, value TEXT NOT NULL, closed INTEGER NOT NULL,
    PRIMARY KEY (customer, feature, period_start));
CREATE TABLE IF NOT EXISTS crossings (
    customer TEXT NOT NULL, feature TEXT NOT NULL, period_start INTEGER NOT NULL,
    count INTEGER NOT NULL, crossed_limit REAL,
    PRIMARY KEY (customer, feature, period_start));
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, kind TEXT NOT NULL, item_id TEXT NOT NULL UNIQUE,
    key TEXT NOT NULL, body BLOB NOT NULL, created_us INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS outbox_key ON outbox (kind, key);
"""

PeriodKey = tuple[str, str, int]


@dataclass(frozen=True)
class Mark:
    """The last rollup put in the outbox for a period."""

    revision: int
    value: str
    closed: bool


@dataclass(frozen=True)
class OutboxItem:
    """One unsent rollup or lifecycle event (``body`` is its JSON)."""

    seq: int
    kind: str
    item_id: str
    body: bytes
    created_us: int


@dataclass(frozen=True)
class NewRollup:
    """A rollup to enqueue, with the mark it sets."""

    key: PeriodKey
    item_id: str
    body: bytes
    mark: Mark


@dataclass(frozen=True)
class NewCrossing:
    """A crossing state to store and, when ``body`` is set, the event to enqueue."""

    key: PeriodKey
    count: int
    crossed_limit: float | None
    item_id: str | None
    body: bytes | None


def _key_text(key: PeriodKey) -> str:
    return f"{key[0]}\0{key[1]}\0{key[2]}"


class AgentStore:
    """The SQLite file; safe to share between the agent's threads (one lock)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._lock = threading.Lock()
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(_SCHEMA)

    def close(self) -> None:
        """Close the file."""
        with self._lock:
            self._db.close()

    # ------------------------------------------------------------------ changes

    def load(self) -> tuple[str | None, SyncedState]:
        """The persisted cursor and state (None and an empty state on a fresh store)."""
        with self._lock:
            rows = dict(self._db.execute("SELECT k, v FROM meta").fetchall())
        cursor = rows.get("cursor")
        state = SyncedState.decode(rows["state"]) if "state" in rows else SyncedState()
        return (None if cursor is None else bytes(cursor).decode()), state

    def commit_changes(
        self, cursor: str, state: SyncedState, journal: Iterable[tuple[int, str, str, str, int]]
    ) -> None:
        """Persist the cursor, the state and the journal rows ``(seq, id, type, outcome,
        applied_us)`` atomically."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.executemany(
                    "INSERT INTO applied (seq, change_id, type, outcome, applied_us) "
                    "VALUES (?, ?, ?, ?, ?)",
                    list(journal),
                )
                self._db.executemany(
                    "INSERT OR REPLACE INTO meta (k, v) VALUES (?, ?)",
                    [("cursor", cursor.encode()), ("state", state.encode())],
                )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def journal(self) -> list[tuple[int, str, str, str]]:
        """Every applied or rejected record as ``(seq, id, type, outcome)``, in order."""
        with self._lock:
            return self._db.execute(
                "SELECT seq, change_id, type, outcome FROM applied ORDER BY seq"
            ).fetchall()

    # ------------------------------------------------------------------ rollups

    def marks(self) -> dict[PeriodKey, Mark]:
        """The last rollup enqueued per period."""
        with self._lock:
            rows = self._db.execute(
                "SELECT customer, feature, period_start, revision, value, closed FROM marks"
            ).fetchall()
        return {(c, f, s): Mark(r, v, bool(x)) for c, f, s, r, v, x in rows}

    def enqueue_rollups(self, items: Sequence[NewRollup], now_us: int) -> None:
        """Put rollups in the outbox (superseding unsent older revisions) and set marks."""
        if not items:
            return
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                for it in items:
                    kt = _key_text(it.key)
                    self._db.execute("DELETE FROM outbox WHERE kind = 'rollup' AND key = ?", (kt,))
                    self._db.execute(
                        "INSERT OR IGNORE INTO outbox (kind, item_id, key, body, created_us) "
                        "VALUES ('rollup', ?, ?, ?, ?)",
                        (it.item_id, kt, it.body, now_us),
                    )
                    self._db.execute(
                        "INSERT OR REPLACE INTO marks VALUES (?, ?, ?, ?, ?, ?)",
                        (*it.key, it.mark.revision, it.mark.value, int(it.mark.closed)),
                    )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    # ------------------------------------------------------------------ crossings

    def crossings(self) -> dict[PeriodKey, tuple[int, float | None]]:
        """Per period: (crossings so far, the limit usage is at or over, or None)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT customer, feature, period_start, count, crossed_limit FROM crossings"
            ).fetchall()
        return {(c, f, s): (n, o) for c, f, s, n, o in rows}

    def record_crossings(self, items: Sequence[NewCrossing], now_us: int) -> None:
        """Store crossing states and enqueue their events, atomically."""
        if not items:
            return
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                for it in items:
                    self._db.execute(
                        "INSERT OR REPLACE INTO crossings VALUES (?, ?, ?, ?, ?)",
                        (*it.key, it.count, it.crossed_limit),
                    )
                    if it.body is not None:
                        self._db.execute(
                            "INSERT OR IGNORE INTO outbox (kind, item_id, key, body, created_us)"
                            " VALUES ('lifecycle', ?, ?, ?, ?)",
                            (it.item_id, _key_text(it.key), it.body, now_us),
                        )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    # ------------------------------------------------------------------ outbox

    def pending(self, kind: str, limit: int) -> list[OutboxItem]:
        """The oldest unsent items of a kind."""
        with self._lock:
            rows = self._db.execute(
                "SELECT seq, kind, item_id, body, created_us FROM outbox WHERE kind = ? "
                "ORDER BY seq LIMIT ?",
                (kind, limit),
            ).fetchall()
        return [OutboxItem(s, k, i, bytes(b), c) for s, k, i, b, c in rows]

    def delete(self, seqs: Sequence[int]) -> None:
        """Drop items the control plane acknowledged."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.executemany("DELETE FROM outbox WHERE seq = ?", [(s,) for s in seqs])
            self._db.execute("COMMIT")

    def outbox_stats(self) -> tuple[int, int | None]:
        """(number of unsent items, creation time of the oldest, or None)."""
        with self._lock:
            n, oldest = self._db.execute("SELECT count(*), min(created_us) FROM outbox").fetchone()
        return int(n), (None if oldest is None else int(oldest))
