"""Persistent state of the reference control plane (one SQLite file, survives restarts).

- ``environments``: id and the SHA-256 of its bearer credential;
- ``changes``: the ordered change feed per environment (``seq`` 1, 2, ...);
- ``totals``: exact totals, the value of the highest revision per (customer, feature,
  period start); ``seen`` remembers every rollup and event id, so a resend is recognized
  and counted as a duplicate instead of being applied again;
- ``lifecycle``: lifecycle events received;
- ``exchanges``: a journal of every request of the protocol (who, what, the raw body), so
  tests can inspect exactly what left a data plane.
"""

from __future__ import annotations

import hashlib
import sqlite3
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec

from meterplane.sync.protocol import ChangeRecord, LifecycleEvent, Rollup

_SCHEMA = """
CREATE TABLE IF NOT EXISTS environments (id TEXT PRIMARY KEY, token_sha256 TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS changes (
    env TEXT NOT NULL, seq INTEGER NOT NULL, id TEXT NOT NULL UNIQUE, type TEXT NOT NULL,
    at TEXT NOT NULL, data TEXT NOT NULL, PRIMARY KEY (env, seq));
CREATE TABLE IF NOT EXISTS totals (
    env TEXT NOT NULL, customer TEXT NOT NULL, feature TEXT NOT NULL, period_start TEXT NOT NULL,
    period_end TEXT, value TEXT NOT NULL, revision INTEGER NOT NULL, rollup_id TEXT NOT NULL,
    as_of TEXT NOT NULL, closed INTEGER NOT NULL,
    PRIMARY KEY (env, customer, feature, period_start));
CREATE TABLE IF NOT EXISTS seen (id TEXT PRIMARY KEY, env TEXT NOT NULL, kind TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS lifecycle (
    env TEXT NOT NULL, event_id TEXT PRIMARY KEY, body TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS counts (
    env TEXT NOT NULL, name TEXT NOT NULL, n INTEGER NOT NULL, PRIMARY KEY (env, name));
CREATE TABLE IF NOT EXISTS exchanges (
    n INTEGER PRIMARY KEY AUTOINCREMENT, env TEXT NOT NULL, method TEXT NOT NULL,
    path TEXT NOT NULL, query TEXT NOT NULL, peer TEXT NOT NULL, body BLOB NOT NULL,
    status INTEGER NOT NULL, at TEXT NOT NULL);
"""


def token_hash(token: str) -> str:
    """What is stored instead of a credential."""
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class BatchOutcome:
    """Counts of one rollup or event batch."""

    accepted: int
    duplicates: int
    stale: int


class ControlPlaneStore:
    """The reference control plane's SQLite file (thread-safe, one lock)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
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

    def _tx(self, statements: list[tuple[str, tuple[Any, ...]]]) -> None:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                for sql, args in statements:
                    self._db.execute(sql, args)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def _all(self, sql: str, args: tuple[Any, ...] = ()) -> list[Any]:
        with self._lock:
            return self._db.execute(sql, args).fetchall()

    # ------------------------------------------------------------------ environments

    def set_environment(self, env: str, token: str) -> None:
        """Create an environment or replace its credential."""
        self._tx([("INSERT OR REPLACE INTO environments VALUES (?, ?)", (env, token_hash(token)))])

    def token_of(self, env: str) -> str | None:
        """The stored credential hash of an environment (None: unknown environment)."""
        rows = self._all("SELECT token_sha256 FROM environments WHERE id = ?", (env,))
        return rows[0][0] if rows else None

    # ------------------------------------------------------------------ change feed

    def append_change(
        self, env: str, kind: str, data: dict[str, Any], at: str, change_id: str | None = None
    ) -> ChangeRecord:
        """Append a change at the end of the environment's feed."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                (last,) = self._db.execute(
                    "SELECT coalesce(max(seq), 0) FROM changes WHERE env = ?", (env,)
                ).fetchone()
                rec = msgspec.convert(
                    {
                        "seq": last + 1,
                        "id": change_id or uuid.uuid4().hex,
                        "type": kind,
                        "at": at,
                        "data": data,
                    },
                    type=ChangeRecord,
                )
                self._db.execute(
                    "INSERT INTO changes VALUES (?, ?, ?, ?, ?, ?)",
                    (env, rec.seq, rec.id, kind, at, msgspec.json.encode(data).decode()),
                )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return rec

    def changes_after(self, env: str, after: int, limit: int) -> list[ChangeRecord]:
        """Changes with ``seq > after``, in order."""
        rows = self._all(
            "SELECT seq, id, type, at, data FROM changes WHERE env = ? AND seq > ? "
            "ORDER BY seq LIMIT ?",
            (env, after, limit),
        )
        return [
            ChangeRecord(seq=s, id=i, type=t, at=a, data=msgspec.json.decode(d))
            for s, i, t, a, d in rows
        ]

    # ------------------------------------------------------------------ aggregates

    def _bump(self, env: str, name: str, n: int) -> tuple[str, tuple[Any, ...]]:
        return (
            "INSERT INTO counts VALUES (?, ?, ?) ON CONFLICT (env, name) DO UPDATE SET n = n + ?",
            (env, name, n, n),
        )

    def add_rollups(self, env: str, rollups: list[Rollup]) -> BatchOutcome:
        """Store rollups: a known id is a duplicate; a lower revision than stored is stale."""
        accepted = duplicates = stale = 0
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                for r in rollups:
                    if self._db.execute(
                        "SELECT 1 FROM seen WHERE id = ?", (r.rollupId,)
                    ).fetchone():
                        duplicates += 1
                        continue
                    self._db.execute("INSERT INTO seen VALUES (?, ?, 'rollup')", (r.rollupId, env))
                    row = self._db.execute(
                        "SELECT revision FROM totals WHERE env = ? AND customer = ? AND "
                        "feature = ? AND period_start = ?",
                        (env, r.customerId, r.featureId, r.periodStart),
                    ).fetchone()
                    if row is not None and row[0] >= r.revision:
                        stale += 1
                        continue
                    self._db.execute(
                        "INSERT OR REPLACE INTO totals VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        (
                            env,
                            r.customerId,
                            r.featureId,
                            r.periodStart,
                            r.periodEnd,
                            msgspec.json.encode(r.value).decode(),
                            r.revision,
                            r.rollupId,
                            r.asOf,
                            int(r.closed),
                        ),
                    )
                    accepted += 1
                for sql, args in (
                    self._bump(env, "rollups_accepted", accepted),
                    self._bump(env, "rollups_duplicate", duplicates),
                    self._bump(env, "rollups_stale", stale),
                ):
                    self._db.execute(sql, args)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return BatchOutcome(accepted, duplicates, stale)

    def add_lifecycle(self, env: str, events: list[LifecycleEvent]) -> BatchOutcome:
        """Store lifecycle events once each (a resend is a duplicate)."""
        accepted = duplicates = 0
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                for e in events:
                    cur = self._db.execute(
                        "INSERT OR IGNORE INTO lifecycle VALUES (?, ?, ?)",
                        (env, e.eventId, msgspec.json.encode(e).decode()),
                    )
                    if cur.rowcount:
                        accepted += 1
                    else:
                        duplicates += 1
                for sql, args in (
                    self._bump(env, "events_accepted", accepted),
                    self._bump(env, "events_duplicate", duplicates),
                ):
                    self._db.execute(sql, args)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return BatchOutcome(accepted, duplicates, 0)

    def totals(self, env: str) -> list[dict[str, Any]]:
        """The exact totals of an environment."""
        rows = self._all(
            "SELECT customer, feature, period_start, period_end, value, revision, rollup_id, "
            "as_of, closed FROM totals WHERE env = ? ORDER BY customer, feature, period_start",
            (env,),
        )
        return [
            {
                "customerId": c,
                "featureId": f,
                "periodStart": s,
                "periodEnd": e,
                "value": msgspec.json.decode(v),
                "revision": r,
                "rollupId": i,
                "asOf": a,
                "closed": bool(x),
            }
            for c, f, s, e, v, r, i, a, x in rows
        ]

    def lifecycle(self, env: str) -> list[Any]:
        """Lifecycle events received, in arrival order."""
        rows = self._all("SELECT body FROM lifecycle WHERE env = ? ORDER BY rowid", (env,))
        return [msgspec.json.decode(b) for (b,) in rows]

    def counts(self, env: str) -> dict[str, int]:
        """Accepted/duplicate/stale counters of an environment."""
        return dict(self._all("SELECT name, n FROM counts WHERE env = ?", (env,)))

    # ------------------------------------------------------------------ journal

    def journal(
        self,
        env: str,
        method: str,
        path: str,
        query: str,
        peer: str,
        body: bytes,
        status: int,
        at: str,
    ) -> None:
        """Record one exchange of the protocol."""
        self._tx(
            [
                (
                    "INSERT INTO exchanges (env, method, path, query, peer, body, status, at) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (env, method, path, query, peer, body, status, at),
                )
            ]
        )

    def exchanges(self, env: str | None = None) -> list[dict[str, Any]]:
        """Every recorded exchange (of one environment, or all), oldest first."""
        sql = "SELECT env, method, path, query, peer, body, status, at FROM exchanges"
        rows = self._all(
            sql + (" WHERE env = ?" if env else "") + " ORDER BY n", (env,) if env else ()
        )
        return [
            {
                "environment": e,
                "method": m,
                "path": p,
                "query": q,
                "peer": pe,
                "body": bytes(b).decode(errors="replace"),
                "status": s,
                "at": a,
            }
            for e, m, p, q, pe, b, s, a in rows
        ]
