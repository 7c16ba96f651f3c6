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
        self._name, self._args = name, args
        self.cluster = self._build_control_plane(*self._build_identity())
        self.node_pools = self._build_node_pools()
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

    def _build_identity(
        self,
    ) -> tuple[managedidentity.UserAssignedIdentity, authorization.RoleAssignment]:
        """The control plane's identity and its right to wrap/unwrap with the key."""
        identity = managedidentity.UserAssignedIdentity(
            f"{self._name}-identity",
            resource_group_name=self._args.resource_group_name,
            resource_name_=f"{self._name}-control-plane",
            location=self._args.location,
            tags=self._args.tags,
            opts=pulumi.ResourceOptions(parent=self),
        )
        # KMS etcd encryption: the control plane's identity wraps/unwraps with the key.
        kms_access = authorization.RoleAssignment(
            f"{self._name}-kms",
            role_assignment_name=roles.assignment_name(self._name, "kms"),
            scope=self._args.vault_id,
            principal_id=identity.principal_id,
            principal_type="ServicePrincipal",
            role_definition_id=roles.role_definition_id(
                self._args.subscription_id, roles.KEY_VAULT_CRYPTO_USER
            ),
            opts=pulumi.ResourceOptions(parent=self),
        )
        return identity, kms_access

    def _build_control_plane(
        self,
        identity: managedidentity.UserAssignedIdentity,
        kms_access: authorization.RoleAssignment,
    ) -> containerservice.ManagedCluster:
        return containerservice.ManagedCluster(
            f"{self._name}-aks",
            resource_group_name=self._args.resource_group_name,
            resource_name_=self._name,
            location=self._args.location,
            kubernetes_version=versions.AKS_VERSION,
            dns_prefix=self._name,
            sku={"name": "Base", "tier": "Standard"},
            identity={"type": "UserAssigned", "user_assigned_identities": [identity.id]},
            agent_pool_profiles=[
                {
                    "name": "system",
                    "mode": "System",
                    "vm_size": "Standard_D4s_v5",
                    "count": len(self._args.zones),
                    "availability_zones": list(self._args.zones),
                    "vnet_subnet_id": self._args.subnet_id,
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
                    "key_id": self._args.key_uri_with_version,
                    "key_vault_network_access": "Public",
                },
            },
            aad_profile={"managed": True, "enable_azure_rbac": True},
            disable_local_accounts=True,
            auto_upgrade_profile={
                "upgrade_channel": "patch",
                "node_os_upgrade_channel": "NodeImage",
            },
            tags=self._args.tags,
            opts=pulumi.ResourceOptions(parent=self, depends_on=[kms_access]),
        )

    def _build_node_pools(self) -> list[containerservice.AgentPool]:
        """One autoscaled user pool per zone for the zone-bound disks of stateful sets."""
        return [
            containerservice.AgentPool(
                f"{self._name}-pool-{zone}",
                resource_group_name=self._args.resource_group_name,
                resource_name_=self.cluster.name,
                agent_pool_name=f"stateful{zone}",
                mode="User",
                vm_size=self._args.vm_size,
                availability_zones=[zone],
                count=self._args.nodes_per_zone,
                enable_auto_scaling=True,
                min_count=self._args.nodes_per_zone,
                max_count=self._args.max_nodes_per_zone,
                vnet_subnet_id=self._args.subnet_id,
                os_type="Linux",
                os_sku="AzureLinux",
                node_labels={"meterplane.io/pool": "stateful"},
                tags=self._args.tags,
                opts=pulumi.ResourceOptions(parent=self),
            )
            for zone in self._args.zones
        ]
