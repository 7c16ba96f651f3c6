"""Raw ``events`` rows for the archive and rebuild benchmarks, written straight into chdb.

Payloads are real wire events (so ``rebuild`` decodes and meters them as in production);
timestamps spread over ``days`` days ending ``age_days`` ago.
"""

from __future__ import annotations

import datetime as dt
import random
from typing import Any

import msgspec

from meterplane.core.model import Event
from meterplane.core.storage import ChdbEngine
from meterplane.core.timeutil import US_PER_S, now_us

DAY_US = 86_400 * US_PER_S
CUSTOMERS = ("acme", "globex", "umbrella", "initech")


def fill(
    engine: ChdbEngine, rows: int, days: int, age_days: int, seed: int = 1, first: int = 0
) -> int:
    """Insert ``rows`` events (keys and log positions from ``first``); return the log
    position after the last one."""
    rng = random.Random(seed)
    end = now_us() - age_days * DAY_US
    chunk = 50_000
    pos = first
    for start in range(first, first + rows, chunk):
        cols: dict[str, list[Any]] = {
            c: []
            for c in (
                "customer_id",
                "idempotency_key",
                "kind",
                "name",
                "timestamp",
                "ingested_at",
                "resource_id",
                "payload",
                "log_pos",
            )
        }
        for i in range(start, min(first + rows, start + chunk)):
            ts = end - rng.randrange(days * DAY_US)
            customer = CUSTOMERS[i % len(CUSTOMERS)]
            name = "completion" if i % 3 else "api_call"
            dims: dict[str, Any] = (
                {"tokens": rng.randint(1, 4000), "latency_ms": rng.random() * 900}
                if name == "completion"
                else {"region": rng.choice(("us", "eu"))}
            )
            when = dt.datetime.fromtimestamp(ts / US_PER_S, tz=dt.UTC)
            event = Event(customer, name, f"e{i}", when, dims)
            cols["customer_id"].append(customer)
            cols["idempotency_key"].append(f"e{i}")
            cols["kind"].append("event")
            cols["name"].append(name)
            cols["timestamp"].append(ts)
            cols["ingested_at"].append(ts + 1000)
            cols["resource_id"].append("")
            cols["payload"].append(msgspec.json.encode(event).decode())
            cols["log_pos"].append(pos)
            pos += 1
        engine.insert("events", cols)
    return pos
