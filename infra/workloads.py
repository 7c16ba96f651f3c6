"""The on-cluster half of a stack, identical for every cloud.

Metering (Kafka, Flink, ClickHouse, ingest, archiver, sync agent) is always declared;
the entitlements service only with ``features.entitlements``, the agent's local
customer data only with ``features.localCustomerData``.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

import pulumi
import pulumi_kubernetes as k8s

from components.k8s import names
from components.k8s.archiver import Archiver, ArchiverArgs
from components.k8s.clickhouse import ClickHouse, ClickHouseArgs
from components.k8s.flink import FlinkJob, FlinkJobArgs
from components.k8s.kafka import Kafka, KafkaArgs
from components.k8s.migrations import SchemaMigration, SchemaMigrationArgs
from components.k8s.network_policies import MeteringEgress, MeteringEgressArgs
from components.k8s.platform import Platform, PlatformArgs
from components.k8s.services import AppService, AppServiceArgs
from components.k8s.sync_agent import SyncAgent, SyncAgentArgs
from components.k8s.target import ClusterTarget
from infra.config import StackConfig
from infra.labels import k8s_labels
from infra.sizing import Sizing


@dataclass(frozen=True)
class Workloads:
    """Handles on the on-cluster components (for exports and tests)."""

    provider: k8s.Provider
    platform: Platform
    egress: MeteringEgress
    kafka: Kafka
    flink: FlinkJob
    clickhouse: ClickHouse
    ingest: AppService
    entitlements: AppService | None
    archiver: Archiver
    sync_agent: SyncAgent
    migration: SchemaMigration


def build_workloads(cfg: StackConfig, sizing: Sizing, target: ClusterTarget) -> Workloads:
    """Declare everything that runs on the cluster through one Kubernetes provider."""
    name, release, prod = cfg.name, cfg.release.version, cfg.is_prod
    labels = k8s_labels(cfg)
    provider = k8s.Provider(
        f"{name}-k8s", kubeconfig=target.kubeconfig, enable_server_side_apply=True
    )
    on_cluster = pulumi.ResourceOptions(providers={"kubernetes": provider})
    platform = Platform(
        f"{name}-platform",
        PlatformArgs(target.storage_provisioner, target.storage_parameters, prod, labels),
        on_cluster,
    )
    after_operators = pulumi.ResourceOptions(
        providers={"kubernetes": provider},
        depends_on=[platform],
    )
    egress = MeteringEgress(
        f"{name}-egress",
        MeteringEgressArgs(target.kube_api_egress, target.object_store_egress, labels),
        after_operators,
    )
    kafka = Kafka(
        f"{name}-kafka",
        KafkaArgs(
            sizing.brokers,
            sizing.partitions,
            sizing.kafka_volume,
            prod,
            operator=platform.operators["strimzi"],
            labels=labels,
        ),
        after_operators,
    )
    clickhouse = ClickHouse(
        f"{name}-clickhouse",
        ClickHouseArgs(
            sizing.clickhouse_shards,
            sizing.clickhouse_replicas,
            sizing.clickhouse_volume,
            target.zones,
            prod,
            operator=platform.operators["clickhouse-operator"],
            labels=labels,
        ),
        after_operators,
    )
    # The release's schema migrations run to completion before any workload of the release.
    migration = SchemaMigration(
        f"{name}-migrate",
        SchemaMigrationArgs(
            release=release,
            clickhouse_url=clickhouse.url,
            replicated=sizing.clickhouse_replicas > 1,
            labels=labels,
            wait_for=[clickhouse],
        ),
        pulumi.ResourceOptions(
            providers={"kubernetes": provider}, depends_on=[platform, clickhouse]
        ),
    )
    after_migration = pulumi.ResourceOptions(
        providers={"kubernetes": provider},
        depends_on=[platform, migration],
        transformations=[migration.runs_first()],
    )
    flink = FlinkJob(
        f"{name}-aggregate",
        FlinkJobArgs(
            release=release,
            parallelism=sizing.flink_parallelism,
            taskmanagers=sizing.flink_taskmanagers,
            state_url=target.archive_url,
            identity=target.identities[names.FLINK_SERVICE_ACCOUNT],
            kafka_bootstrap=kafka.bootstrap,
            clickhouse_url=clickhouse.url,
            prod=prod,
            plugins=target.flink_plugins,
            extra_configuration=target.flink_configuration,
            operator=platform.operators["flink-operator"],
            labels=labels,
        ),
        after_migration,
    )
    ingest = AppService(
        f"{name}-ingest",
        AppServiceArgs(
            command="ingest",
            release=release,
            replicas=sizing.ingest_replicas,
            max_replicas=sizing.ingest_max_replicas,
            environment={"METERPLANE_KAFKA_BOOTSTRAP": kafka.bootstrap},
            prod=prod,
            labels=labels,
        ),
        after_migration,
    )
    entitlements = None
    if cfg.features.entitlements:
        entitlements = AppService(
            f"{name}-entitlements",
            AppServiceArgs(
                command="entitlements",
                release=release,
                replicas=2,
                max_replicas=10,
                environment={"METERPLANE_KAFKA_BOOTSTRAP": kafka.bootstrap},
                clickhouse_url=clickhouse.url,
                prod=prod,
                memory="2Gi",
                labels=labels,
            ),
            after_migration,
        )
    archiver = Archiver(
        f"{name}-archiver",
        ArchiverArgs(
            release=release,
            identity=target.identities[names.ARCHIVER_SERVICE_ACCOUNT],
            clickhouse_url=clickhouse.url,
            environment={
                "METERPLANE_ARCHIVE_URL": target.archive_url.apply(
                    lambda u: u.rstrip("/") + "/events"
                ),
                "METERPLANE_ARCHIVE_KMS_KEY": target.archive_kms_key,
                "METERPLANE_HOT_RETENTION_DAYS": str(cfg.archive.hot_retention_days),
            },
            labels=labels,
        ),
        after_migration,
    )
    endpoint = str(cfg.control_plane.endpoint)
    sync_agent = SyncAgent(
        f"{name}-sync",
        SyncAgentArgs(
            release=release,
            control_plane_url=endpoint,
            control_plane_port=urlsplit(endpoint).port or 443,
            environment_id=cfg.control_plane.environment_id,
            egress_cidrs=cfg.control_plane.egress_cidrs,
            local_customer_data=cfg.features.local_customer_data,
            labels=labels,
        ),
        after_migration,
    )
    return Workloads(
        provider,
        platform,
        egress,
        kafka,
        flink,
        clickhouse,
        ingest,
        entitlements,
        archiver,
        sync_agent,
        migration,
    )
