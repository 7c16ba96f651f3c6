"""Production path end to end, against the embedded path on the same stream.

HTTP -> ``meterplane ingest`` -> Kafka -> Flink job -> counters topic ->
``meterplane entitlements``: counters equal the embedded plane's value by value, checks
give the same decisions, and a restarted entitlements service rebuilds its state from the
counter stream.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest

from meterplane.core.catalog import Catalog, load_catalog
from meterplane.core.counters import CounterKey
from meterplane.core.storage import ChdbEngine, migrate
from meterplane.core.timeutil import now_us
from meterplane.kafka.counters import CounterStream
from meterplane.kafka.loader import ClickHouseLoader
from meterplane.kafka.records import KIND_EVENTS
from meterplane.testing import engines
from tests.engines.traffic import (
    API_KEY,
    CUSTOMERS,
    embedded_counters,
    generate,
    published_counters,
)

# Flink starts take ~15-45 s each on a loaded 2-core machine: allow more than the default.
pytestmark = [pytest.mark.engines, pytest.mark.timeout(600)]
HEADERS = {"X-API-KEY": API_KEY}


def _diff(got: dict[CounterKey, Any], want: dict[CounterKey, Any]) -> str:
    missing = sorted(want.keys() - got.keys())[:5]
    extra = sorted(got.keys() - want.keys())[:5]
    wrong = [(k, got[k], want[k]) for k in sorted(want.keys() & got.keys()) if got[k] != want[k]]
    return (
        f"Flink counters differ from the embedded ones: {len(got)} vs {len(want)} counters; "
        f"missing {missing}; extra {extra}; {len(wrong)} different, e.g. {wrong[:5]}"
    )


def _decisions(url: str, catalog: Catalog) -> dict[tuple[str, str], dict[str, Any]]:
    out = {}
    with httpx.Client(base_url=url, headers=HEADERS, timeout=10) as client:
        for customer in (*CUSTOMERS, "nobody"):
            for feature in (*catalog.features, "no-such-feature"):
                r = client.get(
                    f"/api/v1/customers/{customer}/entitlements/check",
                    params={"featureId": feature, "requestedUsage": 2},
                )
                assert r.status_code == 200, r.text
                out[customer, feature] = r.json()
    return out


def _comparable(decision: dict[str, Any]) -> dict[str, Any]:
    # validUntil/usagePeriodEnd are the same instant; everything else must match exactly.
    return {k: v for k, v in decision.items() if k != "validUntil"}


@pytest.fixture
def pipeline(
    kafka_broker: engines.KafkaBroker, tmp_path: Path, topic_name: str
) -> Iterator[dict[str, Any]]:
    events_topic, counters_topic = f"{topic_name}-events", f"{topic_name}-counters"
    kafka_broker.create_topic(events_topic, partitions=4)
    kafka_broker.create_topic(counters_topic, partitions=4, config={"cleanup.policy": "compact"})
    stream = generate(now_us(), tmp_path)
    assert stream.catalog_path is not None
    topics = ["--events-topic", events_topic, "--counters-topic", counters_topic]
    job = engines.flink_job(
        tmp_path / "flink",
        kafka_broker.bootstrap,
        events_topic=events_topic,
        counters_topic=counters_topic,
        catalog=stream.catalog_path,
    )
    services = {
        name: engines.meterplane_service(
            name,
            tmp_path,
            kafka_broker.bootstrap,
            API_KEY,
            catalog=stream.catalog_path,
            extra_args=topics,
        )
        for name in ("ingest", "entitlements")
    }
    job.start()
    for process, _ in services.values():
        process.start()
    try:
        for process, url in services.values():
            engines.wait_ready(url, process)
        yield {
            "stream": stream,
            "job": job,
            "services": services,
            "bootstrap": kafka_broker.bootstrap,
            "counters_topic": counters_topic,
            "events_topic": events_topic,
            "tmp": tmp_path,
        }
    finally:
        for process, _ in services.values():
            process.stop()
        job.kill()


def test_http_to_flink_counters_equal_embedded_and_entitlements_recover(
    pipeline: dict[str, Any],
) -> None:
    stream = pipeline["stream"]
    assert stream.catalog_path is not None
    catalog = load_catalog(stream.catalog_path)
    _, ingest_url = pipeline["services"]["ingest"]
    with httpx.Client(base_url=ingest_url, headers=HEADERS, timeout=30) as client:
        for kind, body in stream.requests:
            path = "/api/v1/events" if kind == KIND_EVENTS else "/api/v1/usage"
            response = client.post(path, content=body)
            assert response.status_code == 202, response.text

    expected, plane = embedded_counters(
        stream.requests, stream.catalog_path, pipeline["tmp"] / "embedded"
    )
    try:
        # Every meter function and usage reports took part, over several periods.
        kinds = {c.kind for c in plane.aggregator.book.counters.values()}
        assert kinds == {"COUNT", "SUM", "MAX", "MIN", "AVG", "UNIQUE", "LATEST", "USAGE"}
        assert len({ck[2] for ck in expected if ck[1] == "calls"}) >= 3

        counters = CounterStream(pipeline["bootstrap"], catalog, topic=pipeline["counters_topic"])
        counters.start()
        try:
            job = pipeline["job"]
            converged = counters.wait_for(
                lambda: published_counters(counters) == expected or not job.running, 180, 0.2
            )
            published = published_counters(counters)
        finally:
            counters.stop()
        assert job.running, job.output()[-3000:]
        assert converged, _diff(published, expected)
        assert published.keys() == expected.keys()
        for ck, value in expected.items():
            assert published[ck] == value, ck
            assert type(published[ck]) is type(value), ck

        # The same decisions from the production services as from the embedded decider.
        want = {
            (c, f): _comparable(msgspec.to_builtins(plane.decider.check(c, f, 2)))
            for c in (*CUSTOMERS, "nobody")
            for f in (*catalog.features, "no-such-feature")
        }
        ents_process, ents_url = pipeline["services"]["entitlements"]
        got = {k: _comparable(v) for k, v in _decisions(ents_url, catalog).items()}
        assert got == want
        assert {k: _comparable(v) for k, v in _decisions(ingest_url, catalog).items()} == want
        assert got["c1", "calls"]["currentUsage"] > 0

        # Restarted, the entitlements service rebuilds every counter from the stream
        # before it reports ready.
        ents_process.kill()
        ents_process.start()
        engines.wait_ready(ents_url, ents_process)
        again = {k: _comparable(v) for k, v in _decisions(ents_url, catalog).items()}
        assert again == want
        embedded_rows = _raw_rows(plane.engine)
    finally:
        plane.stop()

    # Raw events and counters reach ClickHouse (chdb here; the same SQL as the server
    # driver) from Kafka in large batches: one row per identity, as in the embedded store.
    engine = ChdbEngine(pipeline["tmp"] / "clickhouse")
    try:
        migrate(engine)
        loader = ClickHouseLoader(
            pipeline["bootstrap"],
            engine,
            events_topic=pipeline["events_topic"],
            counters_topic=pipeline["counters_topic"],
        )
        try:
            deadline = time.monotonic() + 60
            while _raw_rows(engine) != embedded_rows or _stored_counters(engine) != {
                ck: None if v is None else float(v) for ck, v in expected.items()
            }:
                assert time.monotonic() < deadline, "loader did not catch up"
                loader.run_once()
        finally:
            loader.close()
        # Large batches: far fewer inserts than records (a record holds many events).
        assert loader.rows_inserted >= len(embedded_rows)
        assert loader.inserts <= 10
    finally:
        engine.close()


def _raw_rows(engine: Any) -> list[tuple[Any, ...]]:
    table = engine.query_arrow(
        "SELECT customer_id, idempotency_key, kind, name, toUnixTimestamp64Micro(timestamp) AS t,"
        " resource_id FROM events FINAL ORDER BY customer_id, idempotency_key"
    )
    return [tuple(r.values()) for r in table.to_pylist()] if table.num_rows else []


def _stored_counters(engine: Any) -> dict[CounterKey, float | None]:
    table = engine.query_arrow(
        "SELECT customer_id, feature_id, toUnixTimestamp64Micro(period_start) AS s, resource_id,"
        " argMax(value, version) AS v FROM counters GROUP BY customer_id, feature_id,"
        " period_start, resource_id"
    )
    if not table.num_rows:
        return {}
    return {
        (r["customer_id"], r["feature_id"], r["s"], r["resource_id"]): r["v"]
        for r in table.to_pylist()
    }
