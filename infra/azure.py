"""Azure foundation of a stack: resource group, VNet, AKS, Key Vault key, ZRS archive."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import pulumi
from pulumi_azure_native import authorization, resources

from components import versions
from components.azure.cluster import Cluster, ClusterArgs
from components.azure.identity import WorkloadIdentity, WorkloadIdentityArgs
from components.azure.keyvault import KeyVault, KeyVaultArgs
from components.azure.network import Network, NetworkArgs
from components.azure.storage import ArchiveStorage, ArchiveStorageArgs
from components.k8s import names
from components.k8s.target import ClusterTarget, EgressRule, PodIdentity
from infra.config import AzureConfig, StackConfig
from infra.labels import cloud_tags
from infra.sizing import MAX_NODES_FACTOR, Sizing

AZURE_ZONES = ("1", "2", "3")


def _short(cfg: StackConfig, limit: int) -> str:
    """Globally unique, alphanumeric name part for vaults and storage accounts."""
    digest = hashlib.sha256(f"{cfg.customer}/{cfg.environment}/{cfg.region}".encode()).hexdigest()
    stem = "".join(c for c in cfg.customer if c.isalnum())
    return f"{stem[: limit - 10]}{cfg.environment[:4]}{digest[:6]}"


@dataclass(frozen=True)
class AzureFoundation:
    """The Azure components of a stack and what they hand to the Kubernetes side."""

    network: Network
    vault: KeyVault
    cluster: Cluster
    archive: ArchiveStorage
    identities: dict[str, WorkloadIdentity]
    target: ClusterTarget


def build_azure(cfg: StackConfig, sizing: Sizing) -> AzureFoundation:
    """Declare the Azure resources and describe the cluster to the Kubernetes side."""
    name, location = cfg.name, cfg.region
    azure = cfg.azure or AzureConfig()
    prefix = azure.resource_group_prefix
    tags = cloud_tags(cfg)
    client = authorization.get_client_config()
    zones = AZURE_ZONES[: cfg.zones]
    group = resources.ResourceGroup(
        f"{name}-rg", resource_group_name=f"{prefix}-{name}", location=location, tags=tags
    )
    network = Network(f"{name}-network", NetworkArgs(group.name, location, cfg.network.cidr, tags))
    vault = KeyVault(
        f"{name}-keys",
        KeyVaultArgs(
            resource_group_name=group.name,
            location=location,
            vault_name=f"kv{_short(cfg, 22)}",
            tenant_id=client.tenant_id,
            subscription_id=client.subscription_id,
            deployer_object_id=client.object_id,
            tags=tags,
        ),
    )
    # 8 vCPU general-purpose nodes everywhere; a dev stack is smaller by zones and count.
    vm_size, vcpu = "Standard_D8s_v5", 8
    per_zone = sizing.nodes_per_zone(
        len(zones), vcpu, entitlements=cfg.features.entitlements, prod=cfg.is_prod
    )
    cluster = Cluster(
        f"{name}-cluster",
        ClusterArgs(
            resource_group_name=group.name,
            location=location,
            zones=zones,
            subnet_id=network.subnet_id,
            vault_id=vault.vault_id,
            key_uri_with_version=vault.key_uri_with_version,
            subscription_id=client.subscription_id,
            vm_size=vm_size,
            nodes_per_zone=per_zone,
            max_nodes_per_zone=MAX_NODES_FACTOR * per_zone,
            tags=tags,
        ),
    )
    archive = ArchiveStorage(
        f"{name}-archive",
        ArchiveStorageArgs(
            resource_group_name=group.name,
            location=location,
            account_name=f"st{_short(cfg, 22)}",
            vault_id=vault.vault_id,
            vault_uri=vault.vault_uri,
            key_name=vault.key_name,
            subscription_id=client.subscription_id,
            retention_days=cfg.archive.retention_days,
            subnet_id=network.subnet_id,
            vnet_id=network.vnet_id,
            tags=tags,
        ),
    )
    identities = {
        account: WorkloadIdentity(
            f"{name}-{account}",
            WorkloadIdentityArgs(
                resource_group_name=group.name,
                location=location,
                oidc_issuer_url=cluster.oidc_issuer_url,
                namespace=names.METERING_NAMESPACE,
                service_account=account,
                container_id=archive.container_id,
                subscription_id=client.subscription_id,
                tags=tags,
            ),
        )
        for account in names.BUCKET_WORKLOADS
    }
    pulumi.export("clusterName", cluster.name)
    pulumi.export("archiveAccount", archive.account_name)
    pulumi.export("keyUri", vault.key_uri_with_version)
    target = ClusterTarget(
        kubeconfig=cluster.kubeconfig,
        zones=tuple(f"{location}-{zone}" for zone in zones),
        storage_provisioner="disk.csi.azure.com",
        storage_parameters={"skuName": "Premium_ZRS" if cfg.is_prod else "Premium_LRS"},
        archive_url=archive.dfs_url,
        archive_kms_key=vault.key_uri_with_version,
        identities={
            account: PodIdentity(
                service_account_annotations={
                    "azure.workload.identity/client-id": identity.client_id
                },
                pod_labels={"azure.workload.identity/use": "true"},
            )
            for account, identity in identities.items()
        },
        # The private cluster's API server and the storage private endpoints are in the
        # VNet; workload identity trades its token at Entra ID.
        kube_api_egress=(EgressRule(str(cfg.network.cidr), 443),),
        object_store_egress=(
            EgressRule(str(cfg.network.cidr), 443),
            *(EgressRule(str(cidr), 443) for cidr in azure.identity_egress_cidrs),
        ),
        # ABFS with the pod's federated token: no account key anywhere.
        flink_configuration={
            "fs.azure.account.auth.type": "OAuth",
            "fs.azure.account.oauth.provider.type": (
                "org.apache.hadoop.fs.azurebfs.oauth2.WorkloadIdentityTokenProvider"
            ),
        },
        flink_plugins=f"flink-azure-fs-hadoop-{versions.FLINK_VERSION}.jar",
    )
    return AzureFoundation(network, vault, cluster, archive, identities, target)
