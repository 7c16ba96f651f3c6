"""Kafka-backed ingest: 202 only after delivery of the whole batch; 503 when it cannot be."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
import msgspec
import pytest

from meterplane.core.catalog import load_catalog
from meterplane.core.counters import CounterBook
from meterplane.core.timeutil import now_us
from meterplane.entitlements.decide import Decider
from meterplane.http.app import create_app
from meterplane.kafka.buffer import KafkaBuffer, KafkaBufferConfig
from meterplane.kafka.records import KIND_EVENTS, decode_events_record
from meterplane.testing import engines
from tests import aio

pytestmark = pytest.mark.engines
API_KEY = "engines-test-key-0123456789"


def _batch(prefix: str, n: int = 50) -> dict[str, object]:
    return {
        "events": [
            {
                "customerId": ("acme", "globex", "initech")[i % 3],
                "eventName": "api_call",
                "idempotencyKey": f"{prefix}-{i}",
                "dimensions": {"region": "us"},
            }
            for i in range(n)
        ]
    }


def _topic_keys(broker: engines.KafkaBroker, topic: str) -> set[tuple[str, str]]:
    keys: set[tuple[str, str]] = set()
    for _, value in broker.read_topic(topic):
        assert value is not None
        for raw in decode_events_record(value).items:
            item = msgspec.json.decode(raw)
            keys.add((item["customerId"], item["idempotencyKey"]))
    return keys


def _acked_keys(batch: dict[str, object]) -> set[tuple[str, str]]:
    events = batch["events"]
    assert isinstance(events, list)
    return {(e["customerId"], e["idempotencyKey"]) for e in events}


def test_broker_outage_gives_503_and_nothing_acked_is_lost(tmp_path: Path) -> None:
    broker = engines.KafkaBroker(tmp_path / "kafka")
    catalog = load_catalog(None)
    with broker:
        broker.create_topic("events", partitions=3)
        buffer = KafkaBuffer(
            KafkaBufferConfig(broker.bootstrap, topic="events", delivery_timeout_s=4.0)
        )
        app = create_app(buffer, Decider(lambda: catalog, CounterBook(catalog)), (API_KEY,))
        acked: set[tuple[str, str]] = set()
        statuses_while_down: list[int] = []

        async def scenario() -> None:
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(
                transport=transport, base_url="http://ingest", headers={"X-API-KEY": API_KEY}
            ) as client:

                async def post(batch: dict[str, object]) -> httpx.Response:
                    response = await client.post("/api/v1/events", json=batch, timeout=30)
                    if response.status_code == 202:
                        acked.update(_acked_keys(batch))
                    return response

                for b in range(5):
                    response = await post(_batch(f"before{b}"))
                    assert response.status_code == 202, response.text
                    assert response.json() == {"accepted": 50}

                broker.stop()
                for b in range(4):
                    response = await post(_batch(f"down{b}"))
                    statuses_while_down.append(response.status_code)
                    assert response.status_code == 503, response.text
                    assert int(response.headers["Retry-After"]) >= 1
                    assert response.json()["error"]["code"] == "buffer_unavailable"
                ready = await client.get("/readyz")
                assert ready.status_code == 503

                broker.start()
                deadline = time.monotonic() + 60
                b = 0
                while True:
                    response = await post(_batch(f"recover{b}"))
                    b += 1
                    if response.status_code == 202:
                        break
                    assert response.status_code == 503
                    assert time.monotonic() < deadline, "ingest did not recover"
                    await asyncio.sleep(0.5)
                for b in range(3):
                    response = await post(_batch(f"after{b}"))
                    assert response.status_code == 202, response.text

        try:
            aio.run(scenario())
        finally:
            buffer.close(timeout=5)
        stored = _topic_keys(broker, "events")

    assert statuses_while_down == [503, 503, 503, 503]
    assert len(acked) >= 9 * 50
    missing = acked - stored
    assert not missing, f"{len(missing)} acked events are not in Kafka"


def test_full_local_queue_gives_503_before_producing(
    kafka_broker: engines.KafkaBroker, topic_name: str
) -> None:
    kafka_broker.create_topic(topic_name, partitions=1)
    buffer = KafkaBuffer(
        KafkaBufferConfig(kafka_broker.bootstrap, topic=topic_name, queue_max_messages=2)
    )
    catalog = load_catalog(None)
    app = create_app(buffer, Decider(lambda: catalog, CounterBook(catalog)), (API_KEY,))

    async def scenario() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://ingest") as client:
            # Three customers -> three records, over the queue bound of two.
            return await client.post(
                "/api/v1/events", json=_batch("q", 3), headers={"X-API-KEY": API_KEY}
            )

    try:
        response = aio.run(scenario())
    finally:
        buffer.close(timeout=1)
    assert response.status_code == 503
    assert "queue is full" in response.json()["error"]["message"]
    assert response.headers["Retry-After"] == "2"


def _librdkafka_threads() -> int:
    """Threads of this process that librdkafka started (it names them ``rdk:...``)."""
    names = (task / "comm" for task in Path("/proc/self/task").iterdir())
    return sum(1 for comm in names if comm.exists() and comm.read_text().startswith("rdk:"))


def test_close_shuts_the_producer_down_with_the_broker_gone(tmp_path: Path) -> None:
    """A producer left to the garbage collector would go on reconnecting to a dead broker."""
    broker = engines.KafkaBroker(tmp_path / "kafka")
    with broker:
        broker.create_topic("events", partitions=1)
        before = _librdkafka_threads()
        buffer = KafkaBuffer(KafkaBufferConfig(broker.bootstrap, topic="events"))
        buffer.append_sync(KIND_EVENTS, now_us(), msgspec.json.encode(_batch("close")))
        assert _librdkafka_threads() > before
        broker.stop()
        started = time.monotonic()
        buffer.close(timeout=2)
        buffer.close(timeout=2)  # a second close does nothing
        assert time.monotonic() - started < 10
        assert _librdkafka_threads() <= before
