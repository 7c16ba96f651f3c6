"""A generated stream for the differential tests: every meter function, SET and DELTA,
duplicates (same and different payloads), late events over several periods, resources,
unmetered values, several customers (one unknown to the catalog)."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import msgspec

from meterplane.core.counters import CounterKey, Number
from meterplane.core.settings import load_settings
from meterplane.core.timeutil import US_PER_S, from_us
from meterplane.http.app import create_app
from meterplane.kafka.counters import CounterStream
from meterplane.kafka.records import KIND_EVENTS, KIND_USAGE
from meterplane.plane import EmbeddedPlane
from tests import aio

CUSTOMERS = ("c1", "c2", "c3", "c4", "ghost")
API_KEY = "engines-pipeline-key-0123456789"
HEADERS = {"X-API-KEY": API_KEY}
HOUR_US = 3600 * US_PER_S


def catalog_yaml(now_us: int) -> str:
    """A catalog with every meter function and HOUR/DAY/none reset periods."""
    start = from_us(now_us - 10 * 24 * HOUR_US - 1234 * US_PER_S).strftime("%Y-%m-%dT%H:%M:%SZ")
    customers = "\n".join(
        f'  - id: {c}\n    subscription: {{planId: pro, startDate: "{start}", status: ACTIVE}}'
        for c in CUSTOMERS[:4]
    )
    return f"""
features:
  - {{id: calls, type: METERED, meter: {{eventName: api_call, aggregation: {{function: COUNT}}}}}}
  - id: eu-calls
    type: METERED
    meter:
      eventName: api_call
      filters: [{{dimension: region, operator: EQUALS, value: eu}}]
      aggregation: {{function: COUNT}}
  - id: tokens
    type: METERED
    meter: {{eventName: completion, aggregation: {{function: SUM, field: tokens}}}}
  - id: cost
    type: METERED
    meter: {{eventName: completion, aggregation: {{function: SUM, field: cost}}}}
  - id: peak
    type: METERED
    meter: {{eventName: completion, aggregation: {{function: MAX, field: latency}}}}
  - id: floor
    type: METERED
    meter: {{eventName: completion, aggregation: {{function: MIN, field: latency}}}}
  - id: mean
    type: METERED
    meter: {{eventName: completion, aggregation: {{function: AVG, field: latency}}}}
  - id: users
    type: METERED
    meter: {{eventName: login, aggregation: {{function: UNIQUE, field: user}}}}
  - id: storage
    type: METERED
    meter: {{eventName: snapshot, aggregation: {{function: LATEST, field: gb}}}}
  - {{id: seats, type: METERED}}
  - {{id: sso, type: BOOLEAN}}
plans:
  - id: pro
    entitlements:
      calls: {{usageLimit: 1000000, resetPeriod: HOUR}}
      eu-calls: {{usageLimit: 500, resetPeriod: DAY}}
      tokens: {{usageLimit: 100000000, resetPeriod: DAY}}
      cost: {{resetPeriod: DAY}}
      peak: {{resetPeriod: HOUR}}
      floor: {{resetPeriod: DAY}}
      mean: {{resetPeriod: DAY}}
      users: {{usageLimit: 1000, resetPeriod: DAY}}
      storage: {{usageLimit: 500}}
      seats: {{usageLimit: 50}}
      sso: {{}}
customers:
{customers}
"""


@dataclass
class Stream:
    """Request bodies in the order they are sent, each (kind, body)."""

    requests: list[tuple[int, bytes]] = field(default_factory=list)
    catalog_path: Path | None = None


def _stamp(ts: int) -> str:
    return from_us(ts).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _event(rng: random.Random, customer: str, key: str, ts: int) -> dict[str, Any]:
    ev: dict[str, Any] = {"customerId": customer, "idempotencyKey": key, "timestamp": _stamp(ts)}
    roll = rng.random()
    if roll < 0.4:
        ev["eventName"] = "api_call"
        ev["dimensions"] = {"region": rng.choice(("us", "eu", "ap"))}
    elif roll < 0.7:
        ev["eventName"] = "completion"
        dims: dict[str, Any] = {
            "tokens": rng.randint(1, 5000),
            "cost": round(rng.random() * 3, 6) + 0.1,
            "latency": rng.choice((rng.randint(5, 900), round(rng.random() * 900, 3))),
        }
        if rng.random() < 0.05:
            dims["tokens"] = "many"  # non-numeric: stored, not counted
        if rng.random() < 0.05:
            del dims["latency"]  # missing field: stored, not counted
        ev["dimensions"] = dims
    elif roll < 0.9:
        ev["eventName"] = "login"
        ev["dimensions"] = {"user": rng.choice((f"u{rng.randint(0, 80)}", rng.randint(0, 20)))}
    else:
        ev["eventName"] = "snapshot"
        ev["dimensions"] = {"gb": rng.randint(1, 900)}
    if rng.random() < 0.2:
        ev["resourceId"] = f"r{rng.randint(1, 3)}"
    return ev


def generate(now_us: int, work_dir: Path, batches: int = 12, size: int = 400) -> Stream:
    """The stream, with its catalog written to ``work_dir/catalog.yaml``."""
    rng = random.Random(20261121)
    stream = Stream()
    stream.catalog_path = work_dir / "catalog.yaml"
    stream.catalog_path.write_text(catalog_yaml(now_us))
    enc = msgspec.json.Encoder()
    sent: list[bytes] = []
    for b in range(batches):
        events = []
        for i in range(size):
            customer = rng.choice(CUSTOMERS)
            if rng.random() < 0.25:  # late: 1 to 50 hours old -> earlier hours and days
                ts = now_us - HOUR_US - int(rng.random() * 49 * HOUR_US)
            else:
                ts = now_us - int(rng.random() * 20 * 60 * US_PER_S)
            events.append(_event(rng, customer, f"b{b}-{i}", ts))
        # A duplicate inside the batch with a different payload: the first copy counts.
        twin = dict(events[3])
        twin["dimensions"] = {"region": "eu", "tokens": 999_999, "gb": 1, "user": "zz"}
        events.append(twin)
        body = enc.encode({"events": events})
        sent.append(body)
        stream.requests.append((KIND_EVENTS, body))
        if b % 4 == 3:  # a client retry of an earlier batch
            stream.requests.append((KIND_EVENTS, sent[rng.randrange(len(sent))]))
    usages = []
    for customer in CUSTOMERS:
        base = now_us - 30 * 60 * US_PER_S
        for j, (behavior, value, offset) in enumerate(
            (
                ("SET", 10, 0),
                ("DELTA", 2, 60),
                ("DELTA", -1, 120),
                ("DELTA", 100, -60),  # before the SET: superseded
                ("SET", 7, 180),
                ("DELTA", 1.5, 240),
            )
        ):
            usage: dict[str, Any] = {
                "customerId": customer,
                "featureId": "seats",
                "value": value,
                "updateBehavior": behavior,
                "timestamp": _stamp(base + offset * US_PER_S),
                "idempotencyKey": f"seat-{customer}-{j}",
            }
            if j % 2:
                usage["resourceId"] = "team-a"
            usages.append(usage)
    rng.shuffle(usages)
    body = enc.encode({"usages": usages})
    stream.requests.append((KIND_USAGE, body))
    stream.requests.append((KIND_USAGE, body))  # retried: no double count
    return stream


def embedded_counters(
    requests: list[tuple[int, bytes]], catalog_path: Path, data_dir: Path
) -> tuple[dict[CounterKey, Number | None], EmbeddedPlane]:
    """Send the stream through the embedded plane's HTTP app; its counters when drained."""
    settings = load_settings(env={}, data_dir=data_dir, catalog=catalog_path, api_keys=API_KEY)
    plane = EmbeddedPlane(settings)
    plane.start()
    app = create_app(plane.buffer, plane.decider, (API_KEY,))

    async def send() -> None:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://embedded") as client:
            for kind, body in requests:
                path = "/api/v1/events" if kind == KIND_EVENTS else "/api/v1/usage"
                response = await client.post(path, content=body, headers=HEADERS)
                assert response.status_code == 202, response.text

    aio.run(send())
    plane.aggregator.drain()
    return {ck: v for ck, _, v in plane.aggregator.book.items()}, plane


def published_counters(stream: CounterStream) -> dict[CounterKey, Number | None]:
    """The counters a ``CounterStream`` has received, as key -> value."""
    return {ck: c.value() for ck, c in list(stream.book.counters.items())}
