"""Realistic traffic for the demo, the benchmarks and the tests.

Batches of 1,000 events over the sample catalog's customers (one of them unknown to the
catalog), with every meter's event kinds, a share of late events (days old, so some land
in earlier periods), duplicated batches, and one batch that is invalid at index 7. The
expected counters are computed offline with the reference ``CounterBook`` over the unique
events, so a run can show that the plane counted exactly that.
"""

from __future__ import annotations

import bisect
import itertools
import random
from dataclasses import dataclass, field
from typing import Any

import msgspec

from meterplane.core.catalog import Catalog
from meterplane.core.counters import CounterBook, Outcome
from meterplane.core.model import Usage, UsageBatch
from meterplane.core.timeutil import US_PER_S, from_us, to_us

CUSTOMERS = ("acme", "globex", "initech", "umbrella", "hooli", "wayne")
REGIONS = ("us", "eu", "ap")
DAY_US = 86_400 * US_PER_S


@dataclass
class Traffic:
    """Encoded request bodies plus what they should count to."""

    event_batches: list[bytes] = field(default_factory=list)
    duplicate_batches: list[bytes] = field(default_factory=list)
    usage_batches: list[bytes] = field(default_factory=list)
    invalid_batch: bytes = b""
    unique_events: int = 0
    expected: CounterBook | None = None


class _Stamps:
    """RFC 3339 text for microsecond instants, formatting each second only once."""

    def __init__(self) -> None:
        self._prefix: dict[int, str] = {}

    def __call__(self, ts: int) -> str:
        sec, us = divmod(ts, US_PER_S)
        prefix = self._prefix.get(sec)
        if prefix is None:
            prefix = self._prefix[sec] = from_us(sec * US_PER_S).strftime("%Y-%m-%dT%H:%M:%S")
        return f"{prefix}.{us:06d}Z"


def _event(rng: random.Random, customer: str, key: str, ts: int, stamp: str) -> dict[str, Any]:
    kind = rng.random()
    ev: dict[str, Any] = {"customerId": customer, "idempotencyKey": key, "timestamp": stamp}
    if kind < 0.55:
        ev["eventName"] = "api_call"
        ev["dimensions"] = {"region": REGIONS[int(rng.random() * 3)]}
    elif kind < 0.8:
        ev["eventName"] = "completion"
        ev["dimensions"] = {
            "tokens": int(rng.random() * 4000) + 1,
            "latency_ms": round(5 + rng.random() * 900, 3),
        }
    elif kind < 0.95:
        ev["eventName"] = "login"
        ev["dimensions"] = {"user": f"u{int(rng.random() * 300)}"}
    else:
        ev["eventName"] = "storage_snapshot"
        ev["dimensions"] = {"gb": int(rng.random() * 900) + 1}
    return ev


def generate(
    catalog: Catalog,
    now_us: int,
    n_events: int = 300_000,
    batch_size: int = 1000,
    late_share: float = 0.08,
    duplicate_share: float = 0.05,
    seed: int = 7,
) -> Traffic:
    """Build the traffic and its expected counters."""
    rng = random.Random(seed)  # noqa: S311 - reproducible test traffic, not secrets
    enc = msgspec.json.Encoder()
    book = CounterBook(catalog)
    out = Outcome()
    t = Traffic()
    cum = list(itertools.accumulate((5, 3, 2, 3, 1, 1)))
    stamps = _Stamps()
    n_batches = max(1, n_events // batch_size)
    for b in range(n_batches):
        events = []
        for i in range(batch_size):
            customer = CUSTOMERS[bisect.bisect(cum, rng.random() * cum[-1])]
            if rng.random() < late_share:
                ts = now_us - DAY_US - int(rng.random() * 29 * DAY_US)
            else:
                ts = now_us - int(rng.random() * 60 * US_PER_S)
            key = f"b{b}-e{i}"
            ev = _event(rng, customer, key, ts, stamps(ts))
            events.append(ev)
            book.apply_event(customer, ev["eventName"], key, ts, ev["dimensions"], "", out)
        t.event_batches.append(enc.encode({"events": events}))
    t.unique_events = n_batches * batch_size
    n_dup = max(1, int(n_batches * duplicate_share))
    t.duplicate_batches = [t.event_batches[rng.randrange(n_batches)] for _ in range(n_dup)]
    # Seats: a SET then DELTAs, for every known customer, plus a DELTA older than the SET.
    usages = []
    for customer in CUSTOMERS[:4]:
        base = rng.randint(2, 10)
        reports = [
            (
                Usage(
                    customer, "seats", base, "SET", from_us(now_us - 30 * US_PER_S), f"s-{customer}"
                )
            ),
            (
                Usage(
                    customer, "seats", 2, "DELTA", from_us(now_us - 20 * US_PER_S), f"d1-{customer}"
                )
            ),
            (
                Usage(
                    customer,
                    "seats",
                    -1,
                    "DELTA",
                    from_us(now_us - 10 * US_PER_S),
                    f"d2-{customer}",
                )
            ),
            (
                Usage(
                    customer,
                    "seats",
                    100,
                    "DELTA",
                    from_us(now_us - 40 * US_PER_S),
                    f"d0-{customer}",
                )
            ),
        ]
        for u in reports:
            usages.append(u)
            assert u.timestamp is not None
            assert u.idempotencyKey is not None
            book.apply_usage(
                customer,
                "seats",
                u.idempotencyKey,
                to_us(u.timestamp),
                u.value,
                u.updateBehavior == "SET",
                "",
                out,
            )
    t.usage_batches = [enc.encode(UsageBatch(usages))]
    bad = msgspec.json.decode(t.event_batches[0], type=dict)
    bad["events"] = bad["events"][:20]
    for i, ev in enumerate(bad["events"]):
        ev["idempotencyKey"] = f"rejected-{i}"
    bad["events"][7]["timestamp"] = "2026-01-01T00:00:00"  # no offset: invalid
    t.invalid_batch = enc.encode(bad)
    t.expected = book
    return t
