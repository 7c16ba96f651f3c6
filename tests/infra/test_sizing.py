"""The sizing formula of infra/sizing.py, value by value and as properties."""

from __future__ import annotations

import math

import pytest

from infra.sizing import size


@pytest.mark.parametrize(
    ("throughput", "brokers", "partitions", "shards", "ingest"),
    [
        (1, 3, 12, 1, 2),
        (50_000, 3, 12, 1, 2),
        (120_000, 3, 12, 1, 3),
        (200_000, 3, 21, 1, 4),
        (250_001, 3, 27, 2, 6),
        (1_000_000, 10, 100, 4, 20),
        (2_500_000, 25, 250, 10, 50),
    ],
)
def test_formula_values(
    throughput: int, brokers: int, partitions: int, shards: int, ingest: int
) -> None:
    sizing = size(throughput, 30)
    assert (
        sizing.brokers,
        sizing.partitions,
        sizing.clickhouse_shards,
        sizing.ingest_replicas,
    ) == (
        brokers,
        partitions,
        shards,
        ingest,
    )
    assert sizing.clickhouse_replicas == 2
    assert sizing.ingest_max_replicas == 3 * ingest
    assert sizing.flink_parallelism == partitions
    assert sizing.flink_taskmanagers == math.ceil(partitions / 4)


@pytest.mark.parametrize("throughput", [1, 999, 10_000, 77_777, 300_000, 1_234_567, 5_000_000])
def test_formula_properties(throughput: int) -> None:
    sizing = size(throughput, 30)
    assert sizing.brokers >= 3  # replication factor 3
    assert sizing.partitions % sizing.brokers == 0  # leaders spread evenly
    assert sizing.partitions * 10_000 >= throughput  # <= 10k events/s per partition
    assert sizing.ingest_replicas * 50_000 >= throughput
    assert sizing.clickhouse_shards * 250_000 >= throughput
    assert sizing.kafka_volume_gib >= 100
    assert sizing.clickhouse_volume_gib >= 100


def test_volumes_grow_with_throughput_and_retention() -> None:
    assert size(100_000, 30).clickhouse_volume_gib > size(50_000, 30).clickhouse_volume_gib
    assert size(50_000, 60).clickhouse_volume_gib > size(50_000, 30).clickhouse_volume_gib
    # Kafka keeps a fixed 3-day buffer: hot retention does not change it.
    assert size(50_000, 60).kafka_volume_gib == size(50_000, 30).kafka_volume_gib
    # 50k events/s, 500 B, 0.35 duty: 756 GB/day raw; ClickHouse 30 days at 8x, x1.5 headroom.
    day = 50_000 * 86_400 * 0.35 * 500
    assert size(50_000, 30).clickhouse_volume_gib == math.ceil(day * 30 / 8 * 1.5 / 1024**3)
    assert size(50_000, 30).kafka_volume == f"{size(50_000, 30).kafka_volume_gib}Gi"


def test_nonsense_is_refused() -> None:
    with pytest.raises(ValueError, match="positive"):
        size(0, 30)


def test_node_count_covers_the_requests_with_headroom() -> None:
    sizing = size(200_000, 30)
    cpu = sizing.cpu_requests(entitlements=True, prod=True)
    # 3 brokers x2 + 3 controllers + 2 ClickHouse x2 + Keeper 1.5 + 6 TMs x2 + 2 JMs
    # + (4 ingest + 2 entitlements) + sync 0.5 + operators 2
    assert cpu == 6 + 3 + 4 + 1.5 + 12 + 2 + 6 + 0.5 + 2
    per_zone = sizing.nodes_per_zone(3, 8, entitlements=True, prod=True)
    assert per_zone == math.ceil(cpu * 1.3 / 7 / 3)
    assert per_zone * 3 * 7 >= cpu * 1.3
    assert sizing.cpu_requests(entitlements=False, prod=True) == cpu - 2
    assert size(1, 7).nodes_per_zone(1, 8, entitlements=False, prod=False) >= 1
    with pytest.raises(ValueError, match="zones"):
        sizing.nodes_per_zone(0, 8, entitlements=True, prod=True)
