"""Capacity derived from the stack's peak throughput (events per second).

The formula, with the reason for every constant:

* ``brokers = max(3, ceil(T / 100_000))`` — a broker on a general-purpose 4-vCPU node
  takes ~100k events/s of ~500-byte events (50 MB/s in, 150 MB/s with replication traffic)
  with headroom; 3 is the floor because replication factor 3 needs three brokers.
* ``partitions = roundup(max(12, ceil(T / 10_000)), brokers)`` — one Flink subtask keeps
  up with ~10k events/s including dedup-state lookups, and parallelism equals partitions;
  a multiple of the broker count spreads leaders evenly; 12 leaves room to grow
  parallelism without repartitioning (which would move keys between counters).
* ``clickhouse_shards = max(1, ceil(T / 250_000))`` with ``clickhouse_replicas = 2`` —
  one replica inserts ~250k rows/s in 1,000-row batches; two replicas in different zones
  survive the loss of a zone.
* ``ingest_replicas = max(2, ceil(T / 50_000))`` — one 1-vCPU ingest pod validates and
  produces ~50k events/s at batch size 1,000; two is the floor for zone redundancy. The
  HPA may grow to three times that for bursts.
* nodes: the pods' CPU requests (per-pod figures in ``components/k8s/sizing.py``: brokers,
  controllers, ClickHouse replicas, Keeper, Flink task and job managers, the services,
  the sync agent and the operators) times 1.3 headroom for rollouts and daemonsets,
  divided by the node's vCPU less one reserved for the kubelet and system pods, spread
  evenly over the zones: ``nodes_per_zone = max(1, ceil(cpu × 1.3 / (vcpu − 1) / zones))``;
  the autoscaler may grow each zone to three times that.
* volumes: a day of raw events is ``T × 86,400 × 0.35 × 500 B`` (peak-to-average 0.35,
  500 B per event). Kafka keeps 3 days on each replica, compressed ~4× by lz4:
  ``kafka_gib = max(100, day × 3 × 3 / brokers / 4 × 1.5)``. ClickHouse keeps
  ``hotRetentionDays`` per shard at ~8× compression:
  ``clickhouse_gib = max(100, day × hot / shards / 8 × 1.5)``. The 1.5 is headroom for
  merges; storage classes allow expansion, so growth never needs new compute.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from components.k8s import sizing as pods
from components.k8s.sizing import FLINK_SLOTS_PER_TASKMANAGER

EVENT_BYTES = 500
PEAK_TO_AVERAGE = 0.35
KAFKA_RETENTION_DAYS = 3
KAFKA_REPLICATION = 3
KAFKA_COMPRESSION = 4.0
CLICKHOUSE_COMPRESSION = 8.0
HEADROOM = 1.5
NODE_HEADROOM = 1.3
MAX_NODES_FACTOR = 3
MIN_VOLUME_GIB = 100
GIB = 1024**3


@dataclass(frozen=True)
class Sizing:
    """Derived capacity of one stack."""

    brokers: int
    partitions: int
    flink_parallelism: int
    flink_taskmanagers: int
    clickhouse_shards: int
    clickhouse_replicas: int
    ingest_replicas: int
    ingest_max_replicas: int
    kafka_volume_gib: int
    clickhouse_volume_gib: int

    def cpu_requests(self, *, entitlements: bool, prod: bool) -> float:
        """vCPU the data plane's pods request in total."""
        return (
            self.brokers * pods.KAFKA_BROKER_CPU
            + 3 * pods.KAFKA_CONTROLLER_CPU
            + self.clickhouse_shards * self.clickhouse_replicas * pods.CLICKHOUSE_CPU
            + 3 * pods.KEEPER_CPU
            + self.flink_taskmanagers * pods.FLINK_TASKMANAGER_CPU
            + (2 if prod else 1) * pods.FLINK_JOBMANAGER_CPU
            + (self.ingest_replicas + (2 if entitlements else 0)) * pods.APP_SERVICE_CPU
            + pods.SYNC_AGENT_CPU
            + pods.OPERATORS_CPU
        )

    def nodes_per_zone(self, zones: int, node_vcpu: int, *, entitlements: bool, prod: bool) -> int:
        """Nodes each zone starts with (see the module docstring)."""
        if zones < 1 or node_vcpu < 2:
            raise ValueError("nodes_per_zone needs zones >= 1 and node_vcpu >= 2")
        cpu = self.cpu_requests(entitlements=entitlements, prod=prod) * NODE_HEADROOM
        return max(1, math.ceil(cpu / (node_vcpu - 1) / zones))

    @property
    def kafka_volume(self) -> str:
        """Kafka broker volume as a Kubernetes quantity."""
        return f"{self.kafka_volume_gib}Gi"

    @property
    def clickhouse_volume(self) -> str:
        """ClickHouse replica volume as a Kubernetes quantity."""
        return f"{self.clickhouse_volume_gib}Gi"


def _round_up(value: int, multiple: int) -> int:
    return math.ceil(value / multiple) * multiple


def size(throughput: int, hot_retention_days: int) -> Sizing:
    """Derive every size from peak events/s and the hot retention (see module docstring)."""
    if throughput < 1 or hot_retention_days < 1:
        raise ValueError("throughput and hot_retention_days must be positive")
    brokers = max(3, math.ceil(throughput / 100_000))
    partitions = _round_up(max(12, math.ceil(throughput / 10_000)), brokers)
    shards = max(1, math.ceil(throughput / 250_000))
    ingest = max(2, math.ceil(throughput / 50_000))
    day_bytes = throughput * 86_400 * PEAK_TO_AVERAGE * EVENT_BYTES
    kafka_bytes = day_bytes * KAFKA_RETENTION_DAYS * KAFKA_REPLICATION / brokers / KAFKA_COMPRESSION
    clickhouse_bytes = day_bytes * hot_retention_days / shards / CLICKHOUSE_COMPRESSION
    return Sizing(
        brokers=brokers,
        partitions=partitions,
        flink_parallelism=partitions,
        flink_taskmanagers=math.ceil(partitions / FLINK_SLOTS_PER_TASKMANAGER),
        clickhouse_shards=shards,
        clickhouse_replicas=2,
        ingest_replicas=ingest,
        ingest_max_replicas=ingest * 3,
        kafka_volume_gib=max(MIN_VOLUME_GIB, math.ceil(kafka_bytes * HEADROOM / GIB)),
        clickhouse_volume_gib=max(MIN_VOLUME_GIB, math.ceil(clickhouse_bytes * HEADROOM / GIB)),
    )
