"""Kafka ingest throughput: HTTP with 1,000-event batches into a local broker, 202 only
after every record of the batch is acknowledged (acks=all, idempotent, lz4).

``events_per_s``: ``meterplane ingest`` under the Go load generator (8 concurrent
clients) on a single-node KRaft broker on loopback. ``producer_events_per_s``: the raw
producer baseline in the same run — confluent-kafka producing the same events straight
to the same broker with the same durability settings, one record per event keyed by
customer, as a client library would, then waiting for every delivery report.
``ratio`` = HTTP / raw producer. ``producer_chunked_events_per_s`` is the producer
alone with the service's own record framing (one record per customer per batch): the
ceiling of the Kafka side of the HTTP path; ``ratio_same_framing`` = HTTP / that.
Run: ``python bench/ingest_kafka.py [--quick]``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import msgspec
from _common import acked_events_per_s, emit, median, run_loadgen, write_bodies
from confluent_kafka import Producer

from meterplane.core.catalog import load_catalog
from meterplane.core.timeutil import now_us
from meterplane.kafka.buffer import KafkaBufferConfig
from meterplane.kafka.records import KIND_EVENTS, split_batch
from meterplane.simulate import generate
from meterplane.testing import engines

CONCURRENCY = 8
API_KEY = "bench-kafka-key-0123456789abcdef"


class _Raw(msgspec.Struct):
    events: list[msgspec.Raw]


class _Customer(msgspec.Struct):
    customerId: str  # noqa: N815 - wire name


def _producer_rate(bootstrap: str, topic: str, records: list[tuple[bytes, bytes]], n: int) -> float:
    config = KafkaBufferConfig(bootstrap, topic=topic).producer_config()
    config.pop("statistics.interval.ms")
    producer = Producer(config)
    failures = []
    # Warm up outside the timing: metadata, connection and the idempotent producer id.
    producer.produce(topic, b"warm-up", b"warm-up")
    producer.flush(30)

    def report(err: object, _msg: object) -> None:
        if err is not None:
            failures.append(err)

    start = time.perf_counter()
    for key, value in records:
        while True:
            try:
                producer.produce(topic, value, key, on_delivery=report)
                break
            except BufferError:
                producer.poll(0.01)
        producer.poll(0)
    remaining = producer.flush(60)
    elapsed = time.perf_counter() - start
    if remaining or failures:
        raise SystemExit(f"producer baseline: {remaining} undelivered, {len(failures)} failed")
    return n / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a shorter run")
    args = parser.parse_args()
    batches, rounds = (40, 1) if args.quick else (150, 3)
    traffic = generate(load_catalog(), now_us(), n_events=batches * 1000, late_share=0.0)
    bodies = traffic.event_batches
    n_events = len(bodies) * 1000
    per_event = [
        (msgspec.json.decode(raw, type=_Customer).customerId.encode(), bytes(raw))
        for body in bodies
        for raw in msgspec.json.decode(body, type=_Raw).events
    ]
    chunked = [r for body in bodies for r in split_batch(KIND_EVENTS, now_us(), body)]
    http_rates, raw_rates, chunk_rates = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        write_bodies(work / "bodies.bin", bodies)
        with engines.KafkaBroker(work / "kafka", heap="1g") as broker:
            broker.create_topic("counters", 4, {"cleanup.policy": "compact"})
            for r in range(rounds):
                for name in (f"raw{r}", f"chunk{r}", f"events{r}"):
                    broker.create_topic(name, 4)
                raw_rates.append(_producer_rate(broker.bootstrap, f"raw{r}", per_event, n_events))
                chunk_rates.append(_producer_rate(broker.bootstrap, f"chunk{r}", chunked, n_events))
                ingest, url = engines.meterplane_service(
                    "ingest",
                    work,
                    broker.bootstrap,
                    API_KEY,
                    extra_args=["--events-topic", f"events{r}"],
                )
                ingest.start()
                try:
                    engines.wait_ready(url, ingest)
                    res = run_loadgen(
                        "post",
                        "-url",
                        f"{url}/api/v1/events",
                        "-bodies",
                        str(work / "bodies.bin"),
                        "-concurrency",
                        str(CONCURRENCY),
                        "-header",
                        f"X-API-KEY:{API_KEY}",
                    )
                finally:
                    ingest.stop()
                http_rates.append(acked_events_per_s(res, len(bodies)))
                print(
                    f"round {r}: http {http_rates[-1]:,.0f} ev/s (p99 {res['p99_ms']} ms), "
                    f"producer {raw_rates[-1]:,.0f} ev/s, chunked {chunk_rates[-1]:,.0f} ev/s",
                    file=sys.stderr,
                )
    http, raw = median(http_rates), median(raw_rates)
    emit(
        {
            "bench": "ingest_kafka",
            "batches": batches,
            "batch_size": 1000,
            "concurrency": CONCURRENCY,
            "rounds": rounds,
            "events_per_s": round(http),
            "producer_events_per_s": round(raw),
            "producer_chunked_events_per_s": round(median(chunk_rates)),
            "ratio": round(http / raw, 3),
            "ratio_same_framing": round(http / median(chunk_rates), 3),
        }
    )


if __name__ == "__main__":
    main()
