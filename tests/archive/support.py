"""Shared helpers of the archive tests: a data directory counted by the real embedded
plane, and readers of what ended up hot and cold."""

from __future__ import annotations

import datetime as dt
import random
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import msgspec
import pyarrow as pa

from meterplane.archive.cold import cold_batches, cold_parts
from meterplane.archive.layout import EVENT_COLUMN_NAMES
from meterplane.archive.stores import ObjectStore
from meterplane.core.model import Event, EventBatch, Usage, UsageBatch
from meterplane.core.settings import Settings
from meterplane.core.storage import ChdbEngine
from meterplane.core.timeutil import US_PER_S, now_us
from meterplane.ingest.buffer import KIND_EVENTS, KIND_USAGE
from meterplane.plane import EmbeddedPlane

DAY_US = 86_400 * US_PER_S
API_KEY = "archive-tests-key-0123456789"
CUSTOMERS = ("acme", "globex", "umbrella", "initech")


@dataclass(frozen=True)
class Seeded:
    """A data directory and what was stored in it."""

    data_dir: Path
    now: int  # the instant the data was generated around (microseconds)
    identities: frozenset[tuple[str, str]]  # every distinct identity stored
    days: int  # events span now - days .. now


def _event(rng: random.Random, customer: str, key: str, ts: dt.datetime) -> Event:
    kind = rng.choice(("api_call", "completion", "login", "storage_snapshot"))
    dims: dict[str, str | int | float | bool] = {}
    if kind == "api_call":
        dims = {"region": rng.choice(("us", "eu"))}
    elif kind == "completion":
        dims = {"tokens": rng.randint(1, 5000), "latency_ms": round(rng.uniform(1, 900), 3)}
    elif kind == "login":
        dims = {"user": f"u{rng.randint(1, 40)}"}
    else:
        dims = {"gb": round(rng.uniform(0, 400), 2)}
    return Event(customer, kind, key, ts, dims)


def seed(data_dir: Path, days: int = 25, per_day: int = 24, seed_: int = 7) -> Seeded:
    """Count ``per_day`` events a day (plus usage reports and resent duplicates) over the
    last ``days`` days with the real embedded plane, then stop it (chdb closed)."""
    rng = random.Random(seed_)
    now = now_us()
    settings = Settings(data_dir=data_dir, api_keys=(API_KEY,), checkpoint_interval_s=3600)
    plane = EmbeddedPlane(settings)
    identities: set[tuple[str, str]] = set()
    try:
        plane.aggregator.recover()
        n = 0
        for day in range(days, -1, -1):
            events = []
            usages = []
            for _ in range(per_day):
                ts_us = now - day * DAY_US - rng.randrange(DAY_US)
                ts = dt.datetime.fromtimestamp(ts_us / US_PER_S, tz=dt.UTC)
                customer = rng.choice(CUSTOMERS)
                key = f"k{n}"
                n += 1
                events.append(_event(rng, customer, key, ts))
                identities.add((customer, key))
                if rng.random() < 0.2:
                    usages.append(
                        Usage(
                            customer,
                            "seats",
                            rng.randint(-1, 3),
                            timestamp=ts,
                            idempotencyKey=f"u{n}",
                        )
                    )
                    identities.add((customer, f"u{n}"))
            # A resend of some of the day's events: stored and counted once.
            events.extend(events[: per_day // 5])
            received = now - day * DAY_US + DAY_US // 2
            plane.log.append_sync(KIND_EVENTS, received, msgspec.json.encode(EventBatch(events)))
            if usages:
                body = msgspec.json.encode(UsageBatch(usages))
                plane.log.append_sync(KIND_USAGE, received, body)
        plane.aggregator.drain()
    finally:
        plane.stop()
    return Seeded(data_dir, now, frozenset(identities), days)


def copy_seeded(template: Seeded, dest: Path) -> Seeded:
    """A private copy of a seeded data directory (chdb files are closed in the template)."""
    shutil.copytree(template.data_dir, dest, symlinks=True)  # chdb links are relative
    return Seeded(dest, template.now, template.identities, template.days)


@contextmanager
def engine_of(data_dir: Path) -> Iterator[ChdbEngine]:
    """The data directory's chdb, closed afterwards (one session per process)."""
    engine = ChdbEngine(data_dir / "chdb")
    try:
        yield engine
    finally:
        engine.close()


def hot_rows(engine: ChdbEngine) -> list[dict[str, object]]:
    """Every hot row (one per identity), sorted by identity."""
    table = engine.query_arrow(
        f"SELECT {', '.join(EVENT_COLUMN_NAMES)} FROM events FINAL "
        "ORDER BY customer_id, idempotency_key"
    )
    return table.to_pylist() if table.num_rows else []


def cold_rows(store: ObjectStore) -> list[dict[str, object]]:
    """Every cold row as the reader returns it, sorted by identity."""
    tables = list(cold_batches(store))
    if not tables:
        return []
    table = pa.concat_tables(tables).sort_by(
        [("customer_id", "ascending"), ("idempotency_key", "ascending")]
    )
    return table.to_pylist()


def raw_cold_rows(store: ObjectStore) -> int:
    """Rows in all manifests (an identity in two parts counts twice)."""
    return sum(p.manifest.rows for p in cold_parts(store))


def ident(row: dict[str, object]) -> tuple[str, str]:
    """A row's identity."""
    return (str(row["customer_id"]), str(row["idempotency_key"]))
