"""GCP foundation of a stack: VPC, regional GKE, Cloud KMS key, GCS archive, identities.

ClickHouse itself holds no bucket credentials in this design: the archiver exports with
its own Workload Identity. If ClickHouse is later given a GCS disk, it must go through
the S3-compatible API with HMAC keys, kept in Secret Manager and synced into a Kubernetes
Secret — not declared here.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_gcp as gcp

from components import versions
from components.gcp.bucket import ArchiveBucket, ArchiveBucketArgs
from components.gcp.cluster import MASTER_CIDR, Cluster, ClusterArgs
from components.gcp.identity import WorkloadIdentity, WorkloadIdentityArgs
from components.gcp.kms import Key, KeyArgs
from components.gcp.network import PRIVATE_GOOGLE_ACCESS, Network, NetworkArgs
from components.k8s import names
from components.k8s.target import ClusterTarget, EgressRule, PodIdentity
from infra.config import StackConfig
from infra.labels import gcp_labels
from infra.sizing import MAX_NODES_FACTOR, Sizing


@dataclass(frozen=True)
class GcpFoundation:
    """The GCP components of a stack and what they hand to the Kubernetes side."""

    network: Network
    key: Key
    cluster: Cluster
    bucket: ArchiveBucket
    identities: dict[str, WorkloadIdentity]
    target: ClusterTarget


def build_gcp(cfg: StackConfig, sizing: Sizing) -> GcpFoundation:
    """Declare the GCP resources and describe the cluster to the Kubernetes side."""
    if cfg.gcp is None:  # guaranteed by StackConfig; keeps the type checker honest
        raise ValueError("meterplane:gcp: required when cloud is gcp")
    name, project, region = cfg.name, cfg.gcp.project, cfg.region
    zones = tuple(sorted(gcp.compute.get_zones(project=project, region=region).names)[: cfg.zones])
    number = gcp.organizations.get_project(project_id=project).number
    storage_agent = gcp.storage.get_project_service_account(project=project).email_address
    labels = gcp_labels(cfg)
    gke_agent = f"service-{number}@container-engine-robot.iam.gserviceaccount.com"
    network = Network(f"{name}-network", NetworkArgs(project, region, cfg.network.cidr, labels))
    key = Key(
        f"{name}-key",
        KeyArgs(project, region, (gke_agent, storage_agent), labels, cfg.archive.kms_key_id),
    )
    # 8 vCPU general-purpose nodes everywhere; a dev stack is smaller by zones and count.
    machine_type, vcpu = "n2-standard-8", 8
    per_zone = sizing.nodes_per_zone(
        len(zones), vcpu, entitlements=cfg.features.entitlements, prod=cfg.is_prod
    )
    cluster = Cluster(
        f"{name}-cluster",
        ClusterArgs(
            project=project,
            region=region,
            zones=zones,
            network_id=network.network_id,
            subnet_id=network.subnet_id,
            key_id=key.key_id,
            machine_type=machine_type,
            nodes_per_zone=per_zone,
            max_nodes_per_zone=MAX_NODES_FACTOR * per_zone,
            labels=labels,
            depends_on=key.grants,
        ),
    )
    bucket = ArchiveBucket(
        f"{name}-archive",
        ArchiveBucketArgs(
            project=project,
            bucket_name=f"meterplane-{name}-archive-{project}",
            location=region.upper(),
            key_id=key.key_id,
            retention_days=cfg.archive.retention_days,
            labels=labels,
            depends_on=key.grants,
        ),
    )
    identities = {
        account: WorkloadIdentity(
            f"{name}-{account}",
            WorkloadIdentityArgs(
                project=project,
                workload_pool=cluster.workload_pool,
                namespace=names.METERING_NAMESPACE,
                service_account=account,
                bucket_name=bucket.name,
            ),
        )
        for account in names.BUCKET_WORKLOADS
    }
    pulumi.export("clusterName", cluster.name)
    pulumi.export("archiveBucket", bucket.name)
    pulumi.export("kmsKeyId", key.key_id)
    target = ClusterTarget(
        kubeconfig=cluster.kubeconfig,
        zones=zones,
        storage_provisioner="pd.csi.storage.gke.io",
        storage_parameters={"type": "pd-balanced", "disk-encryption-kms-key": key.key_id},
        archive_url=bucket.name.apply(lambda b: f"gs://{b}"),
        archive_kms_key=key.key_id,
        identities={
            account: PodIdentity(
                service_account_annotations={"iam.gke.io/gcp-service-account": identity.email}
            )
            for account, identity in identities.items()
        },
        # Private endpoint of the control plane; Google APIs over Private Google Access;
        # the GKE metadata server (Workload Identity tokens) on its link-local addresses.
        kube_api_egress=(EgressRule(MASTER_CIDR, 443),),
        object_store_egress=(
            EgressRule(PRIVATE_GOOGLE_ACCESS, 443),
            EgressRule("169.254.169.254/32", 80),
            EgressRule("169.254.169.252/32", 988),
        ),
        flink_plugins=f"flink-gs-fs-hadoop-{versions.FLINK_VERSION}.jar",
    )
    return GcpFoundation(network, key, cluster, bucket, identities, target)
