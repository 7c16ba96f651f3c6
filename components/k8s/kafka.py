"""Kafka in KRaft mode (Strimzi): controller and broker node pools, topics.

Durability settings are the ack contract of DESIGN.md 4: ingest produces with
``acks=all``, so with replication factor 3 and ``min.insync.replicas`` 2 an acked batch
is on two brokers in two zones. Rack awareness makes Kafka place a partition's replicas
in different zones; Strimzi does not spread pods itself, so every pool carries a zone
topology spread.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from components import versions
from components.k8s import names
from components.k8s.network_policies import KUBE_API_LABEL
from components.k8s.sizing import KAFKA_BROKER_CPU, KAFKA_CONTROLLER_CPU, quantity

RACK_AWARE_SELECTOR = "org.apache.kafka.common.replica.RackAwareReplicaSelector"
EVENTS_RETENTION_MS = 3 * 24 * 3600 * 1000  # the sizing formula's 3 days of buffer
# A counter's value stays on the counters topic at least this long, whatever follows it:
# the Flink job publishes a tombstone for a period once it is final, and the ClickHouse
# loader may be this far behind without missing the value before it.
COUNTERS_MIN_COMPACTION_LAG_MS = 7 * 24 * 3600 * 1000


@dataclass(frozen=True)
class KafkaArgs:
    """Sizing of the cluster and its event topic."""

    brokers: int
    partitions: int
    broker_volume: str
    prod: bool
    # The operator release whose CRDs these custom resources need.
    operator: pulumi.Resource | None = None
    # The stack's common labels (customer, environment, managed-by) for every object.
    labels: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.brokers < 3:
            raise ValueError("KafkaArgs.brokers must be at least 3 (replication factor 3)")
        if self.partitions < 1:
            raise ValueError("KafkaArgs.partitions must be positive")


def _spread(pool: str, hard: bool) -> dict[str, Any]:
    labels = {"strimzi.io/cluster": names.KAFKA_CLUSTER, "strimzi.io/pool-name": pool}
    return {
        "pod": {
            # Rack awareness: Strimzi's init container reads the node's zone from the API.
            "metadata": {"labels": {KUBE_API_LABEL: "true"}},
            "topologySpreadConstraints": [
                {
                    "maxSkew": 1,
                    "topologyKey": names.ZONE_LABEL,
                    "whenUnsatisfiable": "DoNotSchedule" if hard else "ScheduleAnyway",
                    "labelSelector": {"matchLabels": labels},
                }
            ],
        }
    }


class Kafka(pulumi.ComponentResource):
    """The durable buffer between ingest and aggregation."""

    bootstrap: str

    def __init__(
        self, name: str, args: KafkaArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("meterplane:k8s:Kafka", name, None, opts)
        self._name = name
        self._operator = [args.operator] if args.operator else []
        self._labels = dict(args.labels)
        cluster_label = {**self._labels, "strimzi.io/cluster": names.KAFKA_CLUSTER}
        controllers = self._pool(
            "controller",
            3,
            "50Gi",
            ["controller"],
            args.prod,
            quantity(KAFKA_CONTROLLER_CPU),
            "2Gi",
        )
        brokers = self._pool(
            "broker",
            args.brokers,
            args.broker_volume,
            ["broker"],
            args.prod,
            quantity(KAFKA_BROKER_CPU),
            "8Gi",
        )
        self.kafka = k8s.apiextensions.CustomResource(
            f"{name}-cluster",
            api_version=versions.STRIMZI_API,
            kind="Kafka",
            metadata={
                "name": names.KAFKA_CLUSTER,
                "namespace": names.METERING_NAMESPACE,
                "labels": self._labels,
                "annotations": {"strimzi.io/node-pools": "enabled", "strimzi.io/kraft": "enabled"},
            },
            spec={
                "kafka": {
                    "version": versions.KAFKA_VERSION,
                    "listeners": [{"name": "tls", "port": 9093, "type": "internal", "tls": True}],
                    "rack": {"type": "topology-label", "topologyKey": names.ZONE_LABEL},
                    "config": {
                        "default.replication.factor": 3,
                        "min.insync.replicas": 2,
                        "offsets.topic.replication.factor": 3,
                        "transaction.state.log.replication.factor": 3,
                        "transaction.state.log.min.isr": 2,
                        "unclean.leader.election.enable": False,
                        "auto.create.topics.enable": False,
                        # Consumers read from a replica in their own zone (no cross-zone cost).
                        "replica.selector.class": RACK_AWARE_SELECTOR,
                    },
                },
                "entityOperator": {
                    "topicOperator": {},
                    "userOperator": {},
                    # The topic and user operators work through the Kubernetes API.
                    "template": {"pod": {"metadata": {"labels": {KUBE_API_LABEL: "true"}}}},
                },
            },
            opts=pulumi.ResourceOptions(parent=self, depends_on=[controllers, brokers]),
        )
        self.topics = [
            self._topic(
                names.EVENTS_TOPIC,
                args.partitions,
                {
                    "retention.ms": EVENTS_RETENTION_MS,
                    "min.insync.replicas": 2,
                    "compression.type": "lz4",
                },
                cluster_label,
            ),
            self._topic(
                names.COUNTERS_TOPIC,
                args.partitions,
                {
                    "cleanup.policy": "compact",
                    "min.compaction.lag.ms": COUNTERS_MIN_COMPACTION_LAG_MS,
                    "min.insync.replicas": 2,
                    "compression.type": "lz4",
                },
                cluster_label,
            ),
        ]
        self.bootstrap = names.KAFKA_BOOTSTRAP
        self.register_outputs({"bootstrap": self.bootstrap})

    def _pool(
        self,
        pool: str,
        replicas: int,
        size: str,
        roles: list[str],
        prod: bool,
        cpu: str,
        memory: str,
    ) -> k8s.apiextensions.CustomResource:
        return k8s.apiextensions.CustomResource(
            f"{self._name}-{pool}s",
            api_version=versions.STRIMZI_API,
            kind="KafkaNodePool",
            metadata={
                "name": pool,
                "namespace": names.METERING_NAMESPACE,
                "labels": {**self._labels, "strimzi.io/cluster": names.KAFKA_CLUSTER},
            },
            spec={
                "replicas": replicas,
                "roles": roles,
                "storage": {
                    "type": "jbod",
                    "volumes": [
                        {
                            "id": 0,
                            "type": "persistent-claim",
                            "size": size,
                            "class": names.STORAGE_CLASS,
                            "deleteClaim": False,
                            "kraftMetadata": "shared",
                        }
                    ],
                },
                "resources": {
                    "requests": {"cpu": cpu, "memory": memory},
                    "limits": {"memory": memory},
                },
                "template": _spread(pool, prod),
            },
            opts=pulumi.ResourceOptions(parent=self, depends_on=self._operator),
        )

    def _topic(
        self, topic: str, partitions: int, config: dict[str, Any], labels: dict[str, str]
    ) -> k8s.apiextensions.CustomResource:
        return k8s.apiextensions.CustomResource(
            f"{self._name}-topic-{topic}",
            api_version=versions.STRIMZI_API,
            kind="KafkaTopic",
            metadata={"name": topic, "namespace": names.METERING_NAMESPACE, "labels": labels},
            spec={"partitions": partitions, "replicas": 3, "config": config},
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.kafka]),
        )
