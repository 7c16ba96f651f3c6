"""Regional private GKE with Workload Identity, KMS secrets encryption and zonal nodes.

The cluster is regional (control plane replicated across zones) and its node pool is
placed in the stack's zones explicitly, one set of nodes per zone. Dataplane V2 enforces
NetworkPolicy. Nodes run as a dedicated service account with logging/monitoring rights
only; pods get cloud access solely through Workload Identity.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

import pulumi
import pulumi_gcp as gcp

from components import versions
from components.gcp.network import POD_RANGE, SERVICE_RANGE

MASTER_CIDR = "172.16.0.32/28"  # the control plane's private endpoint range


@dataclass(frozen=True)
class ClusterArgs:
    """Placement, encryption key and node sizing."""

    project: str
    region: str
    zones: Sequence[str]
    network_id: pulumi.Input[str]
    subnet_id: pulumi.Input[str]
    key_id: pulumi.Input[str]
    machine_type: str
    nodes_per_zone: int
    max_nodes_per_zone: int
    labels: dict[str, str]
    depends_on: Sequence[pulumi.Resource] = ()

    def __post_init__(self) -> None:
        if not self.zones:
            raise ValueError("ClusterArgs.zones must name at least one zone")


class Cluster(pulumi.ComponentResource):
    """A GKE cluster ready for stateful workloads."""

    name: pulumi.Output[str]
    kubeconfig: pulumi.Output[str]
    workload_pool: str

    def __init__(
        self, name: str, args: ClusterArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("meterplane:gcp:Cluster", name, None, opts)
        self._name, self._args = name, args
        self.workload_pool = f"{args.project}.svc.id.goog"
        self.cluster = self._build_control_plane()
        self.node_pool = self._build_node_pool(self._build_node_account())
        self.name = self.cluster.name
        self.kubeconfig = pulumi.Output.secret(
            pulumi.Output.all(
                self.cluster.name,
                self.cluster.endpoint,
                self.cluster.master_auth.apply(lambda m: m.cluster_ca_certificate or ""),
            ).apply(lambda a: _kubeconfig(a[0], a[1], a[2]))
        )
        self.register_outputs({"name": self.name, "kubeconfig": self.kubeconfig})

    def _build_node_account(self) -> gcp.serviceaccount.Account:
        """Nodes run as their own account with logging, metrics and image pulls only."""
        account = gcp.serviceaccount.Account(
            f"{self._name}-nodes",
            project=self._args.project,
            account_id=f"{self._name}-nodes"[:30],
            display_name=f"GKE nodes of {self._name}",
            opts=pulumi.ResourceOptions(parent=self),
        )
        for role in (
            "roles/logging.logWriter",
            "roles/monitoring.metricWriter",
            "roles/artifactregistry.reader",
        ):
            gcp.projects.IAMMember(
                f"{self._name}-nodes-{role.split('/')[1]}",
                project=self._args.project,
                role=role,
                member=account.email.apply(lambda e: f"serviceAccount:{e}"),
                opts=pulumi.ResourceOptions(parent=self),
            )
        return account

    def _build_control_plane(self) -> gcp.container.Cluster:
        return gcp.container.Cluster(
            f"{self._name}-gke",
            project=self._args.project,
            name=self._name,
            location=self._args.region,
            node_locations=list(self._args.zones),
            network=self._args.network_id,
            subnetwork=self._args.subnet_id,
            remove_default_node_pool=True,
            initial_node_count=1,
            deletion_protection=True,
            release_channel={"channel": versions.GKE_RELEASE_CHANNEL},
            datapath_provider="ADVANCED_DATAPATH",
            ip_allocation_policy={
                "cluster_secondary_range_name": POD_RANGE,
                "services_secondary_range_name": SERVICE_RANGE,
            },
            private_cluster_config={
                "enable_private_nodes": True,
                "enable_private_endpoint": True,
                "master_ipv4_cidr_block": MASTER_CIDR,
            },
            master_authorized_networks_config={"cidr_blocks": []},
            workload_identity_config={"workload_pool": self.workload_pool},
            database_encryption={"state": "ENCRYPTED", "key_name": self._args.key_id},
            enable_shielded_nodes=True,
            resource_labels=self._args.labels,
            opts=pulumi.ResourceOptions(parent=self, depends_on=list(self._args.depends_on)),
        )

    def _build_node_pool(self, account: gcp.serviceaccount.Account) -> gcp.container.NodePool:
        return gcp.container.NodePool(
            f"{self._name}-pool",
            project=self._args.project,
            name="stateful",
            cluster=self.cluster.id,
            location=self._args.region,
            node_locations=list(self._args.zones),
            node_count=self._args.nodes_per_zone,
            autoscaling={
                "min_node_count": self._args.nodes_per_zone,
                "max_node_count": self._args.max_nodes_per_zone,
            },
            management={"auto_repair": True, "auto_upgrade": True},
            upgrade_settings={"max_surge": 1, "max_unavailable": 0},
            node_config={
                "machine_type": self._args.machine_type,
                "disk_type": "pd-balanced",
                "resource_labels": self._args.labels,
                "service_account": account.email,
                "oauth_scopes": ["https://www.googleapis.com/auth/cloud-platform"],
                "workload_metadata_config": {"mode": "GKE_METADATA"},
                "shielded_instance_config": {
                    "enable_secure_boot": True,
                    "enable_integrity_monitoring": True,
                },
            },
            opts=pulumi.ResourceOptions(parent=self),
        )


def _kubeconfig(name: str, endpoint: str, ca_data: str) -> str:
    """Kubeconfig using gke-gcloud-auth-plugin (short-lived tokens, nothing stored)."""
    return json.dumps(
        {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": name,
                    "cluster": {
                        "server": f"https://{endpoint}",
                        "certificate-authority-data": ca_data,
                    },
                }
            ],
            "contexts": [{"name": name, "context": {"cluster": name, "user": name}}],
            "current-context": name,
            "users": [
                {
                    "name": name,
                    "user": {
                        "exec": {
                            "apiVersion": "client.authentication.k8s.io/v1beta1",
                            "command": "gke-gcloud-auth-plugin",
                            "provideClusterInfo": True,
                        }
                    },
                }
            ],
        }
    )
