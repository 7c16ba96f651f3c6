"""AKS over zones 1-3: private API, KMS etcd encryption, OIDC issuer, workload identity.

The system pool spans all of the stack's zones; stateful workloads get one user pool per
zone because Azure disks are zonal (same reason as EKS). Cilium enforces NetworkPolicy.
Local accounts are disabled: access is Entra ID + Azure RBAC only.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass

import pulumi
from pulumi_azure_native import authorization, containerservice, managedidentity

from components import versions
from components.azure import roles


@dataclass(frozen=True)
class ClusterArgs:
    """Placement, encryption key and node sizing of the cluster."""

    resource_group_name: pulumi.Input[str]
    location: str
    zones: Sequence[str]
    subnet_id: pulumi.Input[str]
    vault_id: pulumi.Input[str]
    key_uri_with_version: pulumi.Input[str]
    subscription_id: str
    vm_size: str
    nodes_per_zone: int
    max_nodes_per_zone: int
    tags: dict[str, str]

    def __post_init__(self) -> None:
        if not self.zones:
            raise ValueError("ClusterArgs.zones must name at least one zone")


class Cluster(pulumi.ComponentResource):
    """An AKS cluster ready for stateful workloads."""

    name: pulumi.Output[str]
    oidc_issuer_url: pulumi.Output[str]
    kubeconfig: pulumi.Output[str]

    def __init__(
        self, name: str, args: ClusterArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("meterplane:azure:Cluster", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        identity = managedidentity.UserAssignedIdentity(
            f"{name}-identity",
            resource_group_name=args.resource_group_name,
            resource_name_=f"{name}-control-plane",
            location=args.location,
            tags=args.tags,
            opts=child,
        )
        # KMS etcd encryption: the control plane's identity wraps/unwraps with the key.
        kms_access = authorization.RoleAssignment(
            f"{name}-kms",
            role_assignment_name=roles.assignment_name(name, "kms"),
            scope=args.vault_id,
            principal_id=identity.principal_id,
            principal_type="ServicePrincipal",
            role_definition_id=roles.role_definition_id(
                args.subscription_id, roles.KEY_VAULT_CRYPTO_USER
            ),
            opts=child,
        )
        self.cluster = containerservice.ManagedCluster(
            f"{name}-aks",
            resource_group_name=args.resource_group_name,
            resource_name_=name,
            location=args.location,
            kubernetes_version=versions.AKS_VERSION,
            dns_prefix=name,
            sku={"name": "Base", "tier": "Standard"},
            identity={"type": "UserAssigned", "user_assigned_identities": [identity.id]},
            agent_pool_profiles=[
                {
                    "name": "system",
                    "mode": "System",
                    "vm_size": "Standard_D4s_v5",
                    "count": len(args.zones),
                    "availability_zones": list(args.zones),
                    "vnet_subnet_id": args.subnet_id,
                    "os_type": "Linux",
                    "os_sku": "AzureLinux",
                    "enable_auto_scaling": False,
                    # Keep app pods off the system pool (AKS's documented taint).
                    "node_taints": ["CriticalAddonsOnly=true:NoSchedule"],
                }
            ],
            network_profile={
                "network_plugin": "azure",
                "network_plugin_mode": "overlay",
                "network_dataplane": "cilium",
                "network_policy": "cilium",
                "outbound_type": "loadBalancer",
            },
            api_server_access_profile={"enable_private_cluster": True},
            oidc_issuer_profile={"enabled": True},
            security_profile={
                "workload_identity": {"enabled": True},
                "azure_key_vault_kms": {
                    "enabled": True,
                    "key_id": args.key_uri_with_version,
                    "key_vault_network_access": "Public",
                },
            },
            aad_profile={"managed": True, "enable_azure_rbac": True},
            disable_local_accounts=True,
            auto_upgrade_profile={
                "upgrade_channel": "patch",
                "node_os_upgrade_channel": "NodeImage",
            },
            tags=args.tags,
            opts=pulumi.ResourceOptions(parent=self, depends_on=[kms_access]),
        )
        self.node_pools = [
            containerservice.AgentPool(
                f"{name}-pool-{zone}",
                resource_group_name=args.resource_group_name,
                resource_name_=self.cluster.name,
                agent_pool_name=f"stateful{zone}",
                mode="User",
                vm_size=args.vm_size,
                availability_zones=[zone],
                count=args.nodes_per_zone,
                enable_auto_scaling=True,
                min_count=args.nodes_per_zone,
                max_count=args.max_nodes_per_zone,
                vnet_subnet_id=args.subnet_id,
                os_type="Linux",
                os_sku="AzureLinux",
                node_labels={"meterplane.io/pool": "stateful"},
                tags=args.tags,
                opts=child,
            )
            for zone in args.zones
        ]
        self.name = self.cluster.name
        self.oidc_issuer_url = self.cluster.oidc_issuer_profile.apply(
            lambda p: (p.issuer_url or "") if p else ""
        )
        credentials = containerservice.list_managed_cluster_user_credentials_output(
            resource_group_name=args.resource_group_name,
            resource_name=self.cluster.name,
            format="exec",  # kubelogin: Entra ID tokens, no static credentials
        )
        self.kubeconfig = pulumi.Output.secret(
            credentials.kubeconfigs.apply(lambda k: base64.b64decode(k[0].value).decode())
        )
        self.register_outputs({"name": self.name, "oidcIssuerUrl": self.oidc_issuer_url})
