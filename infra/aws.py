"""AWS foundation of a stack: VPC, EKS, KMS key, S3 archive and pod identities."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from components import versions
from components.aws.bucket import ArchiveBucket, ArchiveBucketArgs
from components.aws.cluster import Cluster, ClusterArgs
from components.aws.identity import WorkloadIdentity, WorkloadIdentityArgs
from components.aws.kms import Key, KeyArgs
from components.aws.network import Network, NetworkArgs
from components.k8s import names
from components.k8s.target import ClusterTarget, EgressRule, PodIdentity
from infra.config import StackConfig
from infra.labels import cloud_tags
from infra.sizing import MAX_NODES_FACTOR, Sizing

POD_IDENTITY_AGENT = "169.254.170.23/32"


@dataclass(frozen=True)
class AwsFoundation:
    """The AWS components of a stack and what they hand to the Kubernetes side."""

    network: Network
    key: Key
    cluster: Cluster
    bucket: ArchiveBucket
    identities: dict[str, WorkloadIdentity]
    target: ClusterTarget


def build_aws(cfg: StackConfig, sizing: Sizing) -> AwsFoundation:
    """Declare the AWS resources and describe the cluster to the Kubernetes side."""
    name = cfg.name
    tags = cloud_tags(cfg)
    available = aws.get_availability_zones(state="available", region=cfg.region)
    zones = tuple(sorted(available.names)[: cfg.zones])
    network = Network(f"{name}-network", NetworkArgs(cfg.network.cidr, zones, cfg.region, tags))
    key = Key(
        f"{name}-key",
        KeyArgs(
            f"Meterplane {name}: cluster secrets, archive, volumes", tags, cfg.archive.kms_key_id
        ),
    )
    # 8 vCPU general-purpose nodes everywhere; a dev stack is smaller by zones and count.
    instance_type, vcpu = "m7i.2xlarge", 8
    per_zone = sizing.nodes_per_zone(
        len(zones), vcpu, entitlements=cfg.features.entitlements, prod=cfg.is_prod
    )
    cluster = Cluster(
        f"{name}-cluster",
        ClusterArgs(
            subnet_ids=network.private_subnet_ids,
            key_arn=key.arn,
            region=cfg.region,
            instance_type=instance_type,
            nodes_per_zone=per_zone,
            max_nodes_per_zone=MAX_NODES_FACTOR * per_zone,
            tags=tags,
        ),
    )
    bucket = ArchiveBucket(
        f"{name}-archive",
        ArchiveBucketArgs(
            bucket_name=f"meterplane-{name}-archive-{cfg.region}",
            key_arn=key.arn,
            retention_days=cfg.archive.retention_days,
            tags=tags,
        ),
    )
    identities = {
        account: WorkloadIdentity(
            f"{name}-{account}-identity",
            WorkloadIdentityArgs(
                cluster_name=cluster.name,
                namespace=names.METERING_NAMESPACE,
                service_account=account,
                bucket_arn=bucket.arn,
                key_arn=key.arn,
                tags=tags,
            ),
        )
        for account in names.BUCKET_WORKLOADS
    }
    pulumi.export("clusterName", cluster.name)
    pulumi.export("archiveBucket", bucket.name)
    pulumi.export("kmsKeyArn", key.arn)
    target = ClusterTarget(
        kubeconfig=cluster.kubeconfig,
        zones=zones,
        storage_provisioner="ebs.csi.aws.com",
        storage_parameters={"type": "gp3", "encrypted": "true", "kmsKeyId": key.arn},
        archive_url=bucket.name.apply(lambda b: f"s3://{b}"),
        archive_kms_key=key.arn,
        # Pod Identity needs no annotation: the association binds the service account.
        identities={account: PodIdentity() for account in identities},
        # API server (private endpoint) and S3 (interface endpoint) live in the VPC; the
        # Pod Identity agent answers on a link-local address on every node.
        kube_api_egress=(EgressRule(str(cfg.network.cidr), 443),),
        object_store_egress=(
            EgressRule(str(cfg.network.cidr), 443),
            EgressRule(POD_IDENTITY_AGENT, 80),
        ),
        flink_plugins=f"flink-s3-fs-presto-{versions.FLINK_VERSION}.jar",
    )
    return AwsFoundation(network, key, cluster, bucket, identities, target)
