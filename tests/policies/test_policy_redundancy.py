"""Redundancy policies: zones, Kafka replication, ClickHouse replicas, disruption budgets."""

from __future__ import annotations

from typing import Any

import pytest
from policytest_support import assert_level_override, messages, res

CLUSTER = res("aws:eks/cluster:Cluster", "cluster", {"name": "acme-prod"}, id="acme-prod")
SUBNETS = [
    res(
        "aws:ec2/subnet:Subnet",
        f"private-{index}",
        {"availabilityZone": zone},
        id=f"subnet-{index}",
    )
    for index, zone in enumerate(["us-east-1a", "us-east-1b", "us-east-1c"])
]


def node_group(index: int, subnet_ids: Any) -> Any:
    return res(
        "aws:eks/nodeGroup:NodeGroup",
        f"nodes-{index}",
        {"clusterName": "acme-prod", "subnetIds": subnet_ids},
    )


# --- node-pools-multi-zone -------------------------------------------------------------


def test_one_eks_node_group_per_zone_spans_three_zones() -> None:
    groups = [node_group(index, [f"subnet-{index}"]) for index in range(3)]
    assert messages("node-pools-multi-zone", [CLUSTER, *SUBNETS, *groups]) == []


def test_eks_node_groups_in_one_zone_fail() -> None:
    groups = [node_group(index, ["subnet-0"]) for index in range(3)]
    found = messages("node-pools-multi-zone", [CLUSTER, *SUBNETS, *groups])
    assert found == [
        "Cluster cluster has node pools in 1 zone(s) ['us-east-1a'] "
        "(nodes-0, nodes-1, nodes-2); needs at least 3"
    ]


def test_node_group_without_subnets_counts_no_zone() -> None:
    found = messages("node-pools-multi-zone", [CLUSTER, *SUBNETS, node_group(0, None)])
    assert found == ["Cluster cluster has node pools in 0 zone(s) [] (nodes-0); needs at least 3"]


def test_gke_and_aks_pools_count_zones_per_cluster() -> None:
    gke = res("gcp:container/cluster:Cluster", "gke", {"name": "gke", "location": "us-central1"})
    narrow = res(
        "gcp:container/nodePool:NodePool",
        "narrow",
        {"cluster": "gke", "nodeLocations": ["us-central1-a", "us-central1-b"]},
    )
    assert messages("node-pools-multi-zone", [gke, narrow]) == [
        "Cluster gke has node pools in 2 zone(s) ['us-central1-a', 'us-central1-b'] "
        "(narrow); needs at least 3"
    ]
    # One AKS pool per zone (zone-bound disks) covers three zones together.
    aks = res("azure-native:containerservice:ManagedCluster", "aks", {"resourceName": "aks"})
    per_zone = [
        res(
            "azure-native:containerservice:AgentPool",
            f"pool-{zone}",
            {"resourceName": "aks", "availabilityZones": [zone]},
        )
        for zone in ("1", "2", "3")
    ]
    assert messages("node-pools-multi-zone", [aks, *per_zone]) == []
    assert messages("node-pools-multi-zone", [aks, per_zone[0]]) == [
        "ManagedCluster aks has node pools in 1 zone(s) ['1'] (pool-1); needs at least 3"
    ]


def test_min_zones_option_and_level_override() -> None:
    groups = [node_group(index, [f"subnet-{index}"]) for index in range(2)]
    resources = [CLUSTER, *SUBNETS, *groups]
    assert messages("node-pools-multi-zone", resources) != []
    assert messages("node-pools-multi-zone", resources, {"minZones": 2}) == []
    assert_level_override("node-pools-multi-zone", resources)


# --- kafka-replication -------------------------------------------------------------------

KAFKA_CONFIG = {
    "default.replication.factor": 3,
    "min.insync.replicas": 2,
    "offsets.topic.replication.factor": 3,
    "transaction.state.log.replication.factor": 3,
    "transaction.state.log.min.isr": 2,
}


def kafka(config: dict[str, Any], rack: dict[str, Any] | None = None) -> Any:
    spec = {"kafka": {"config": config, **({"rack": rack} if rack is not None else {})}}
    return res("kubernetes:kafka.strimzi.io/v1:Kafka", "kafka", {"spec": spec})


RACK = {"type": "topology-label", "topologyKey": "topology.kubernetes.io/zone"}


def pool(roles: list[str], replicas: float) -> Any:
    return res(
        "kubernetes:kafka.strimzi.io/v1:KafkaNodePool",
        f"pool-{roles[0]}",
        {"spec": {"roles": roles, "replicas": replicas}},
    )


def test_rack_aware_replicated_kafka_passes() -> None:
    topic = res(
        "kubernetes:kafka.strimzi.io/v1:KafkaTopic",
        "events",
        {"spec": {"partitions": 12.0, "replicas": 3.0, "config": {"min.insync.replicas": 2}}},
    )
    resources = [kafka(KAFKA_CONFIG, RACK), pool(["broker"], 3.0), pool(["controller"], 3.0), topic]
    assert messages("kafka-replication", resources) == []


def test_under_replicated_kafka_fails() -> None:
    weak = {**KAFKA_CONFIG, "default.replication.factor": 1, "min.insync.replicas": "1"}
    topic = res("kubernetes:kafka.strimzi.io/v1:KafkaTopic", "events", {"spec": {"replicas": 1.0}})
    found = messages("kafka-replication", [kafka(weak, RACK), pool(["broker"], 1.0), topic])
    assert found == [
        "Kafka kafka spec.kafka.config default.replication.factor is 1 (needs >= 3)",
        "Kafka kafka spec.kafka.config min.insync.replicas is 1 (needs >= 2)",
        "KafkaNodePool pool-broker (broker) has 1 replicas (needs >= 3)",
        "KafkaTopic events has 1.0 replicas (needs >= 3)",
    ]


def test_kafka_without_rack_or_config_fails() -> None:
    found = messages("kafka-replication", [kafka({})])
    assert found[0].startswith(
        "Kafka kafka is not rack-aware by zone (spec.kafka.rack.topologyKey is not set"
    )
    assert "default.replication.factor is not set" in found[1]
    assert len(found) == 6


def test_kafka_options_and_level_override() -> None:
    two = {key: min(value, 2) for key, value in KAFKA_CONFIG.items()}
    resources = [kafka(two, RACK), pool(["broker"], 2.0)]
    assert messages("kafka-replication", resources) != []
    assert messages("kafka-replication", resources, {"replicationFactor": 2}) == []
    assert_level_override("kafka-replication", resources)


# --- clickhouse-replication --------------------------------------------------------------


def chi(replicas: Any, keeper: bool = True) -> Any:
    configuration: dict[str, Any] = {
        "clusters": [
            {
                "name": "events",
                "layout": {
                    "shardsCount": 1.0,
                    **({"replicasCount": replicas} if replicas is not None else {}),
                },
            }
        ]
    }
    if keeper:
        configuration["zookeeper"] = {"nodes": [{"host": "keeper-keeper", "port": 2181.0}]}
    return res(
        "kubernetes:clickhouse.altinity.com/v1:ClickHouseInstallation",
        "chi",
        {"spec": {"configuration": configuration}},
    )


def chk(replicas: float) -> Any:
    return res(
        "kubernetes:clickhouse-keeper.altinity.com/v1:ClickHouseKeeperInstallation",
        "keeper",
        {
            "spec": {
                "configuration": {
                    "clusters": [{"name": "keeper", "layout": {"replicasCount": replicas}}]
                }
            }
        },
    )


def test_replicated_clickhouse_with_three_keepers_passes() -> None:
    assert messages("clickhouse-replication", [chi(2.0), chk(3.0)]) == []


@pytest.mark.parametrize(("keepers", "bad"), [(1.0, True), (2.0, True), (3.0, False), (5.0, False)])
def test_keeper_quorum(keepers: float, bad: bool) -> None:
    assert bool(messages("clickhouse-replication", [chk(keepers)])) is bad


def test_single_replica_and_missing_layout_fail() -> None:
    assert messages("clickhouse-replication", [chi(1.0)]) == [
        "ClickHouseInstallation chi cluster events has 1 replica(s) per shard (needs >= 2)"
    ]
    found = messages("clickhouse-replication", [chi(None, keeper=False)])
    assert "has 1 replica(s)" in found[0]
    assert "names no Keeper" in found[1]


def test_clickhouse_options_and_level_override() -> None:
    assert messages("clickhouse-replication", [chi(2.0)], {"minReplicas": 3}) != []
    assert_level_override("clickhouse-replication", [chi(1.0)])


# --- pod-disruption-budgets --------------------------------------------------------------


def workload(kind: str, name: str, labels: dict[str, str]) -> Any:
    props = {
        "metadata": {"name": name, "namespace": "metering"},
        "spec": {"replicas": 3.0, "template": {"metadata": {"labels": labels}}},
    }
    return res(f"kubernetes:apps/v1:{kind}", name, props)


def budget(match: dict[str, str], namespace: str = "metering") -> Any:
    props = {
        "metadata": {"name": "pdb", "namespace": namespace},
        "spec": {"maxUnavailable": 1.0, "selector": {"matchLabels": match}},
    }
    return res("kubernetes:policy/v1:PodDisruptionBudget", f"pdb-{namespace}", props)


INGEST = workload("Deployment", "ingest", {"app.kubernetes.io/name": "ingest", "tier": "api"})


def test_ingest_with_budget_passes_and_other_deployments_are_not_required() -> None:
    other = workload("Deployment", "entitlements", {"app.kubernetes.io/name": "entitlements"})
    assert (
        messages(
            "pod-disruption-budgets", [INGEST, other, budget({"app.kubernetes.io/name": "ingest"})]
        )
        == []
    )


def test_missing_budget_fails_for_ingest_and_statefulsets() -> None:
    stateful = workload("StatefulSet", "store", {"app": "store"})
    wrong_namespace = budget({"app.kubernetes.io/name": "ingest"}, namespace="shared")
    found = messages("pod-disruption-budgets", [INGEST, stateful, wrong_namespace])
    assert found == [
        "Deployment ingest (metering/ingest) has no PodDisruptionBudget selecting its pods",
        "StatefulSet store (metering/store) has no PodDisruptionBudget selecting its pods",
    ]


def test_budget_without_selector_labels_selects_the_whole_namespace() -> None:
    empty = res(
        "kubernetes:policy/v1:PodDisruptionBudget",
        "all",
        {"metadata": {"namespace": "metering"}, "spec": {}},
    )
    assert messages("pod-disruption-budgets", [INGEST, empty]) == []


def test_budget_workloads_option_and_level_override() -> None:
    entitlements = workload(
        "Deployment", "entitlements", {"app.kubernetes.io/name": "entitlements"}
    )
    assert messages("pod-disruption-budgets", [entitlements]) == []
    assert messages("pod-disruption-budgets", [entitlements], {"workloads": ["entitlements"]}) != []
    assert_level_override("pod-disruption-budgets", [INGEST])
