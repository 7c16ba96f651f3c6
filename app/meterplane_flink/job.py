"""The aggregation job on Flink: events topic -> dedup -> exact counters -> counters topic.

Run in the Flink environment (``.flink-venv`` locally, the job image in production):
``python -m meterplane_flink.job --bootstrap HOST:PORT --catalog catalog.yaml ...``

Pipeline (one keyed operator, key = customerId, which is also the Kafka record key, so a
customer's records arrive in their partition's order):

1. ``KafkaSource`` reads the events topic (one record = one customer's chunk of a request,
   see ``meterplane.kafka.records``); offsets are part of each checkpoint.
2. ``CountOperator.process_element`` drops every item whose identity
   (customerId, idempotencyKey) is in the ``seen`` map state — whose entries expire after
   the dedup window (state TTL, processing time) — records the rest as seen, and applies
   them with the reference semantics of ``meterplane.core.counters.CounterBook``; counter
   states live in the ``counters`` map state, so a checkpoint holds exactly the counters
   of the offsets it holds: a restart from it neither loses nor double-counts.
3. Past periods leave state: at most once per hour of receipt time per customer, the
   counters of periods that ended before ``settle_before`` (no record still to come can
   land in them) and whose last value is published are removed from ``counters``; a
   processing-time timer does the same when the customer's next period becomes final by
   the clock, so a customer who stops sending is swept too. ``retired_before`` remembers
   where; a count that lands there all the same (a lateness window lengthened since) is
   refused and counted in the ``items_past_retired_periods`` metric, as
   ``CounterBook.retire`` does on the embedded plane. Each removed counter's
   key gets a tombstone on the counters topic, so compaction drops it there too, after the
   ClickHouse loader has stored its last value (the topic's ``min.compaction.lag.ms``).
4. Mini-batch: changed counters are marked in ``pending`` and published by a
   processing-time timer at most ``--mini-batch-ms`` later (the latency bound; 0 publishes
   every change at once). Each publication carries the counter's version (its update
   count), so readers ignore the older values a replay after a restart re-emits.
5. A Kafka table sink (key = customer/feature/period/resource) writes them to the
   compacted counters topic, which the entitlement service and the ClickHouse loader read.
"""

from __future__ import annotations

import argparse
import os
import site
import sys
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import msgspec
import yaml
from pyflink.common import Configuration, Row, Types, WatermarkStrategy
from pyflink.common.serialization import SimpleStringSchema
from pyflink.common.time import Time
from pyflink.datastream import (
    CheckpointingMode,
    ExternalizedCheckpointRetention,
    KeyedProcessFunction,
    RuntimeContext,
    StreamExecutionEnvironment,
)
from pyflink.datastream.connectors.kafka import KafkaOffsetsInitializer, KafkaSource
from pyflink.datastream.state import MapStateDescriptor, StateTtlConfig, ValueStateDescriptor
from pyflink.table import StreamTableEnvironment

from meterplane.core.catalog import DEFAULT_CATALOG, parse_catalog
from meterplane.core.counters import (
    KINDS,
    SETTLE_MARGIN_US,
    Counter,
    CounterBook,
    CounterKey,
    Outcome,
    UsageCounter,
    settle_before,
)
from meterplane.core.model import Event, Usage
from meterplane.core.timeutil import to_us
from meterplane.kafka.records import (
    KEY_SEP,
    KIND_EVENTS,
    CounterRecord,
    counter_key,
    decode_events_record,
    encode_counter,
    record_customer,
    usage_key,
)
from meterplane_flink.checkpoints import latest_checkpoint

_decode_event = msgspec.json.Decoder(Event).decode
_decode_usage = msgspec.json.Decoder(Usage).decode
_encode_state = msgspec.json.Encoder().encode
_decode_state = msgspec.json.Decoder().decode
RETIRE_EVERY_US = 3_600_000_000  # a customer's past periods are swept once an hour (receipt)
RETIRE_RETRY_MS = 1_000  # a final counter still to be published is swept again this much later


def _state_key(feature: str, start: int, resource: str) -> str:
    return f"{feature}{KEY_SEP}{start}{KEY_SEP}{resource}"


def _parse_state_key(customer: str, key: str) -> CounterKey:
    feature, start, resource = key.split(KEY_SEP)
    return (customer, feature, int(start), resource)


class StateCounters(dict[CounterKey, Counter]):
    """The counters of one customer for one element, loaded lazily from map state.

    ``CounterBook`` looks counters up with ``counters.get`` and creates missing ones: this
    mapping answers ``get`` from Flink state, so only touched counters are read, and after
    the element the touched ones (``book.dirty``) are written back with a new version.
    """

    def __init__(self, state: Any, book: CounterBook, versions: dict[CounterKey, int]) -> None:
        super().__init__()
        self._state = state
        self._book = book
        self._versions = versions

    def get(self, ck: CounterKey, default: Any = None) -> Any:
        if dict.__contains__(self, ck):
            return dict.__getitem__(self, ck)
        raw = self._state.get(_state_key(ck[1], ck[2], ck[3]))
        if raw is None:
            return default
        end, kind, state, version = _decode_state(raw)
        counter = KINDS[kind](*state)
        dict.__setitem__(self, ck, counter)
        self._book.period_end[ck] = end
        self._versions[ck] = version
        return counter


def _counter_record(
    ck: CounterKey, end: int | None, counter: Counter, version: int
) -> CounterRecord:
    customer, feature, start, resource = ck
    return CounterRecord(
        customer,
        feature,
        start,
        resource,
        end,
        counter.value(),
        version,
        time.time_ns() // 1000,
    )


class CountOperator(KeyedProcessFunction):  # type: ignore[misc]
    """Dedup + counters for the customer of the current key (see the module docstring).

    Defined at module level so Flink pickles it by reference; the catalog travels as its
    YAML text and is parsed again in ``open`` on the task manager.
    """

    def __init__(
        self, catalog_text: str, dedup_window_s: float, mini_batch_ms: int, lateness_days: float
    ) -> None:
        self.catalog_text = catalog_text
        self.dedup_window_s = dedup_window_s
        self.mini_batch_ms = mini_batch_ms
        self.lateness_us = int(lateness_days * 86_400_000_000)

    def open(self, runtime_context: RuntimeContext) -> None:
        ttl = (
            StateTtlConfig.new_builder(Time.milliseconds(int(self.dedup_window_s * 1000)))
            .set_update_type(StateTtlConfig.UpdateType.OnCreateAndWrite)
            .set_state_visibility(StateTtlConfig.StateVisibility.NeverReturnExpired)
            .cleanup_full_snapshot()
            .build()
        )
        seen = MapStateDescriptor("seen", Types.STRING(), Types.LONG())
        seen.enable_time_to_live(ttl)
        self.seen = runtime_context.get_map_state(seen)
        self.counters = runtime_context.get_map_state(
            MapStateDescriptor("counters", Types.STRING(), Types.STRING())
        )
        self.pending = runtime_context.get_map_state(
            MapStateDescriptor("pending", Types.STRING(), Types.BOOLEAN())
        )
        self.retired_before = runtime_context.get_state(
            ValueStateDescriptor("retired_before", Types.LONG())
        )
        self.retire_timer = runtime_context.get_state(
            ValueStateDescriptor("retire_timer", Types.LONG())
        )
        catalog = parse_catalog(yaml.safe_load(self.catalog_text) or {}, "catalog")
        self.book = CounterBook(catalog)
        metrics = runtime_context.get_metrics_group()
        self.duplicates = metrics.counter("duplicates")
        self.unmetered = metrics.counter("unmetered")
        self.past_retired = metrics.counter("items_past_retired_periods")
        self.retired = metrics.counter("counters_retired")

    def process_element(self, value: str, ctx: Any) -> Iterator[Row]:
        record = decode_events_record(value.encode())
        book = self.book
        versions: dict[CounterKey, int] = {}
        # Start each element from an empty book (restore([]) also drops the book's cache of
        # current-period counters), whose counters are then read lazily from state.
        retired_before = self.retired_before.value() or 0
        book.restore([], retired_before)
        book.counters = StateCounters(self.counters, book, versions)
        out = Outcome()
        dups = 0
        received = record.received_us
        seen = self.seen
        if record.kind == KIND_EVENTS:
            for raw in record.items:
                ev = _decode_event(raw)
                if seen.contains(ev.idempotencyKey):
                    dups += 1
                    continue
                seen.put(ev.idempotencyKey, received)
                ts = received if ev.timestamp is None else to_us(ev.timestamp)
                book.apply_event(
                    ev.customerId,
                    ev.eventName,
                    ev.idempotencyKey,
                    ts,
                    ev.dimensions,
                    ev.resourceId or "",
                    out,
                )
        else:
            for index, raw in zip(record.indexes, record.items, strict=True):
                u = _decode_usage(raw)
                key = u.idempotencyKey or usage_key(record.batch_id, index)
                if seen.contains(key):
                    dups += 1
                    continue
                seen.put(key, received)
                ts = received if u.timestamp is None else to_us(u.timestamp)
                book.apply_usage(
                    u.customerId,
                    u.featureId,
                    key,
                    ts,
                    u.value,
                    u.updateBehavior == "SET",
                    u.resourceId or "",
                    out,
                )
        if dups:
            self.duplicates.inc(dups)
        if out.unmetered:
            self.unmetered.inc(out.unmetered)
        if out.retired:
            self.past_retired.inc(out.retired)
        # a customer's records come in the order of its partition, so none still to come
        # was received much before this one (``settle_before``)
        settled = settle_before(received, self.lateness_us)
        changed = self._store(versions, settled)
        if settled - retired_before >= RETIRE_EVERY_US:
            unpublished = {skey for *_, skey in changed}
            gone = self._retire(settled, unpublished, ctx.timer_service())
            yield from _tombstones(record.customer_id, gone)
        if self.mini_batch_ms <= 0:
            for ck, end, counter, version, _ in changed:
                yield _emit(ck, end, counter, version)
            return
        for *_, skey in changed:
            self.pending.put(skey, True)
        if changed:
            now = ctx.timer_service().current_processing_time()
            ctx.timer_service().register_processing_time_timer(
                (now // self.mini_batch_ms + 1) * self.mini_batch_ms
            )

    def _store(
        self, versions: dict[CounterKey, int], settled: int
    ) -> list[tuple[CounterKey, int | None, Counter, int, str]]:
        """Write the element's changed counters back to state, each with its next version
        (usage DELTAs before ``settled`` folded into their sum); return what changed."""
        book = self.book
        changed = []
        for ck in book.dirty:
            version = versions.get(ck, 0) + 1
            counter = book.counters[ck]
            if counter.__class__ is UsageCounter:
                counter.settle(settled)
            state = [book.period_end[ck], counter.kind, counter.state(), version]
            skey = _state_key(ck[1], ck[2], ck[3])
            self.counters.put(skey, _encode_state(state).decode())
            changed.append((ck, book.period_end[ck], counter, version, skey))
        return changed

    def _retire(self, before: int, unpublished: set[str], timers: Any) -> list[str]:
        """Remove the current customer's counters of periods that ended at or before
        ``before`` and whose last value is published (not changed by this element, not
        pending), and return their state keys; from now on counts into periods ending by
        then are refused. Then set the timer for the next sweep by the clock."""
        gone = []
        kept_ends = []
        for skey, raw in self.counters.items():
            end = _decode_state(raw)[0]
            final = end is not None and end <= before
            if final and skey not in unpublished and not self.pending.contains(skey):
                gone.append(skey)
            elif end is not None:
                kept_ends.append(end)
        for skey in gone:
            self.counters.remove(skey)
        self.retired.inc(len(gone))
        self.retired_before.update(max(before, self.retired_before.value() or 0))
        self._wake_when_final(min(kept_ends, default=None), timers)
        return gone

    def _wake_when_final(self, end: int | None, timers: Any) -> None:
        """Wake this customer when the period ending at ``end`` (its earliest still held)
        is final by the clock, or forget the wake-up where none is held. An earlier wake-up
        is left registered: it may share its instant with a mini-batch's timer, and when it
        fires it only publishes (``on_timer`` sweeps at ``retire_timer``'s instant alone)."""
        if end is None:
            self.retire_timer.clear()
            return
        final_ms = (end + self.lateness_us + SETTLE_MARGIN_US) // 1000 + 1
        at = max(final_ms, timers.current_processing_time() + RETIRE_RETRY_MS)
        timers.register_processing_time_timer(at)
        self.retire_timer.update(at)

    def on_timer(self, timestamp: int, ctx: Any) -> Iterable[Row]:
        customer = ctx.get_current_key()
        keys = list(self.pending.keys())
        for skey in keys:
            raw = self.counters.get(skey)
            if raw is None:
                continue
            end, kind, state, version = _decode_state(raw)
            ck = _parse_state_key(customer, skey)
            yield _emit(ck, end, KINDS[kind](*state), version)
        self.pending.clear()
        if timestamp == self.retire_timer.value():  # (after the values just published)
            self.retire_timer.clear()
            # a record still to come is received later than now: the clock bounds it
            before = settle_before(timestamp * 1000, self.lateness_us)
            yield from _tombstones(customer, self._retire(before, set(), ctx.timer_service()))


def _tombstones(customer: str, state_keys: Iterable[str]) -> Iterator[Row]:
    """A record with no value for each retired counter: compaction drops its key."""
    for skey in state_keys:
        yield Row(counter_key(*_parse_state_key(customer, skey)).decode(), None)


def _emit(ck: CounterKey, end: int | None, counter: Counter, version: int) -> Row:
    key = counter_key(*ck).decode()
    return Row(key, encode_counter(_counter_record(ck, end, counter, version)).decode())


def _parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="meterplane_flink.job", description=__doc__.splitlines()[0])
    p.add_argument(
        "--bootstrap",
        default=os.environ.get("METERPLANE_KAFKA_BOOTSTRAP"),
        help="Kafka bootstrap servers (default: METERPLANE_KAFKA_BOOTSTRAP)",
    )
    p.add_argument("--events-topic", default="events")
    p.add_argument("--counters-topic", default="counters")
    p.add_argument("--group-id", default="meterplane-aggregate")
    p.add_argument(
        "--catalog",
        type=Path,
        default=os.environ.get("METERPLANE_CATALOG") or None,
        help="catalog file (default: METERPLANE_CATALOG, else the bundled sample)",
    )
    p.add_argument(
        "--checkpoint-dir",
        type=Path,
        help="local mode: checkpoint here and resume from the latest one; without it the "
        "cluster's configuration (state.checkpoints.dir, HA, upgradeMode) governs",
    )
    p.add_argument("--checkpoint-interval-ms", type=int, default=1000)
    p.add_argument(
        "--mini-batch-ms",
        type=int,
        default=int(os.environ.get("METERPLANE_MINI_BATCH_MS", "200")),
        help="latency bound of counter publication (default: METERPLANE_MINI_BATCH_MS or 200)",
    )
    p.add_argument(
        "--dedup-window-s",
        type=float,
        default=float(os.environ.get("METERPLANE_DEDUP_WINDOW_S", "86400")),
        help="how long an identity is remembered (default: METERPLANE_DEDUP_WINDOW_S or 24 h)",
    )
    p.add_argument(
        "--lateness-days",
        type=float,
        default=float(os.environ.get("METERPLANE_LATENESS_DAYS", "35")),
        help="ingest's lateness window: usage DELTAs older than it, and a day, are kept as "
        "their sum, and periods that ended before then leave state (default: "
        "METERPLANE_LATENESS_DAYS or 35)",
    )
    p.add_argument("--parallelism", type=int, default=1)
    p.add_argument("--connector-jar", type=Path, help="Flink Kafka connector jar (local mode)")
    p.add_argument(
        "--no-restore",
        action="store_true",
        help="start fresh even if the checkpoint dir holds a completed checkpoint",
    )
    p.add_argument(
        "--bounded",
        action="store_true",
        help="stop at the topic's current end (tests and backfills)",
    )
    args = p.parse_args(argv)
    if not args.bootstrap:
        p.error("--bootstrap or METERPLANE_KAFKA_BOOTSTRAP is required")
    return args


def main(argv: list[str] | None = None) -> int:
    """Build and run the job (blocks until it ends or the process is stopped)."""
    args = _parse(sys.argv[1:] if argv is None else argv)
    _export_python_path()
    catalog_text = _catalog_text(args.catalog)
    parse_catalog(yaml.safe_load(catalog_text) or {}, "catalog")  # fail fast on a bad file
    config = Configuration()
    # Thread mode runs the Python operator inside the JVM (pemja): state reads and writes
    # are direct calls instead of Beam round trips to a worker process.
    config.set_string("python.execution-mode", "thread")
    if args.connector_jar is not None:
        config.set_string("pipeline.jars", args.connector_jar.resolve().as_uri())
    if args.checkpoint_dir is not None:
        _local_mode(config, args.checkpoint_dir.resolve(), restore=not args.no_restore)

    env = StreamExecutionEnvironment.get_execution_environment(config)
    env.set_parallelism(args.parallelism)
    env.enable_checkpointing(args.checkpoint_interval_ms, CheckpointingMode.EXACTLY_ONCE)
    env.get_checkpoint_config().set_externalized_checkpoint_retention(
        ExternalizedCheckpointRetention.RETAIN_ON_CANCELLATION
    )
    env.get_checkpoint_config().set_min_pause_between_checkpoints(
        max(100, args.checkpoint_interval_ms // 2)
    )

    builder = (
        KafkaSource.builder()
        .set_bootstrap_servers(args.bootstrap)
        .set_topics(args.events_topic)
        .set_group_id(args.group_id)
        .set_starting_offsets(KafkaOffsetsInitializer.earliest())
        .set_value_only_deserializer(SimpleStringSchema())
        .set_property("isolation.level", "read_committed")
        .set_property("fetch.max.wait.ms", "50")
    )
    if args.bounded:
        builder = builder.set_bounded(KafkaOffsetsInitializer.latest())
    stream = env.from_source(builder.build(), WatermarkStrategy.no_watermarks(), "events")
    counters = (
        stream.key_by(_record_customer, key_type=Types.STRING())
        .process(
            CountOperator(
                catalog_text, args.dedup_window_s, args.mini_batch_ms, args.lateness_days
            ),
            output_type=Types.ROW_NAMED(["k", "v"], [Types.STRING(), Types.STRING()]),
        )
        .name("dedup-and-count")
        .uid("dedup-and-count")
    )
    tenv = StreamTableEnvironment.create(env)
    tenv.execute_sql(
        f"""
        CREATE TABLE counters_sink (k STRING, v STRING) WITH (
          'connector' = 'kafka',
          'topic' = '{args.counters_topic}',
          'properties.bootstrap.servers' = '{args.bootstrap}',
          'properties.linger.ms' = '5',
          'properties.compression.type' = 'lz4',
          'properties.enable.idempotence' = 'true',
          'properties.acks' = 'all',
          'key.format' = 'raw',
          'key.fields' = 'k',
          'value.format' = 'raw',
          'value.fields-include' = 'EXCEPT_KEY',
          'sink.delivery-guarantee' = 'at-least-once'
        )
        """
    )
    table = tenv.from_data_stream(counters)
    result = table.execute_insert("counters_sink")
    result.wait()
    return 0


def _local_mode(config: Configuration, checkpoint_dir: Path, *, restore: bool) -> None:
    """Local mini-cluster: checkpoints on disk, restarts in-process, resume after a kill.

    What the Flink operator does for a deployment (HA, ``upgradeMode: last-state``) is
    done here by hand: start from the latest completed checkpoint in ``checkpoint_dir``.
    """
    checkpoint_dir.mkdir(parents=True, exist_ok=True)
    config.set_string("python.executable", sys.executable)
    config.set_string("state.backend.type", "hashmap")
    config.set_string("execution.checkpointing.storage", "filesystem")
    config.set_string("execution.checkpointing.dir", checkpoint_dir.as_uri())
    config.set_string("execution.checkpointing.num-retained", "3")
    config.set_string("restart-strategy.type", "fixed-delay")
    config.set_string("restart-strategy.fixed-delay.attempts", "2147483647")
    config.set_string("restart-strategy.fixed-delay.delay", "1 s")
    latest = latest_checkpoint(checkpoint_dir) if restore else None
    if latest is not None:
        config.set_string("execution.state-recovery.path", latest.as_uri())
        print(f"meterplane_flink: restoring from {latest}", flush=True)


def _export_python_path() -> None:
    """Let the interpreter that thread mode embeds in the JVM (pemja) import what we do.

    It starts from the base Python, not this venv, so it needs the venv's site-packages
    (pemja, pyflink, msgspec, ...) and the directory of ``meterplane`` on PYTHONPATH. The
    JVM is started after this and inherits the environment.
    """
    here = Path(__file__).resolve().parent.parent  # the directory holding meterplane_flink
    parts = [str(here), *site.getsitepackages()]
    current = os.environ.get("PYTHONPATH")
    if current:
        parts.append(current)
    os.environ["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(parts))


def _catalog_text(path: Path | None) -> str:
    return (path or DEFAULT_CATALOG).read_text(encoding="utf-8")


def _record_customer(value: str) -> str:
    return record_customer(value.encode())


if __name__ == "__main__":
    # Run as a script (``-pym meterplane_flink.job``, as the Flink operator's PythonDriver
    # does), this file is ``__main__``; Flink must pickle the operator by reference, so
    # run the copy imported under its real module name.
    from meterplane_flink.job import main as _main

    raise SystemExit(_main())
