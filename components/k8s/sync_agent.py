"""The sync agent in ``shared``: the data plane's only path to the vendor.

Its NetworkPolicy admits no ingress at all (the agent opens every connection, DESIGN.md 6)
and allows egress only to cluster DNS, the control plane's published address ranges on its
HTTPS port, and (inside the cluster) ClickHouse, whose counters the rollups are built
from. One replica with ``Recreate``: the change cursor and the outbox live on its volume,
and two agents would send the same rollups twice.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from ipaddress import IPv4Network
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from components.k8s import names, pods
from components.k8s.network_policies import dns_rule
from components.k8s.services import app_container
from components.k8s.sizing import SYNC_AGENT_CPU, quantity

STATE_MOUNT = "/var/lib/meterplane"


@dataclass(frozen=True)
class SyncAgentArgs:
    """Control-plane address and what the agent keeps locally."""

    release: str
    control_plane_url: str
    control_plane_port: int
    environment_id: str
    egress_cidrs: tuple[IPv4Network, ...]
    local_customer_data: bool
    # The stack's common labels (customer, environment, managed-by) for every object.
    labels: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.egress_cidrs:
            raise ValueError("SyncAgentArgs.egress_cidrs must name the control plane's ranges")


# Name of the Secret (key "token") holding the environment's bearer credential; not a secret.
CONTROL_PLANE_SECRET = "meterplane-control-plane"  # noqa: S105


def egress_rules(cidrs: tuple[IPv4Network, ...], port: int) -> list[dict[str, Any]]:
    """DNS to kube-dns, HTTPS to the control plane's ranges, and, inside the cluster only,
    ClickHouse's HTTP port: the agent builds rollups from the ``counters`` table. Nothing
    else, and nothing else outside the cluster."""
    return [
        dns_rule(),
        {
            "to": [{"ipBlock": {"cidr": str(cidr)}} for cidr in cidrs],
            "ports": [{"protocol": "TCP", "port": port}],
        },
        {
            "to": [
                {
                    "namespaceSelector": {
                        "matchLabels": {"kubernetes.io/metadata.name": names.METERING_NAMESPACE}
                    },
                    "podSelector": {
                        "matchLabels": {
                            "clickhouse.altinity.com/chi": names.CLICKHOUSE_INSTALLATION
                        }
                    },
                }
            ],
            "ports": [{"protocol": "TCP", "port": 8123}],
        },
    ]


class SyncAgent(pulumi.ComponentResource):
    """Outbound-only link between the customer's data plane and the vendor."""

    network_policy: k8s.networking.v1.NetworkPolicy

    def __init__(
        self, name: str, args: SyncAgentArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("meterplane:k8s:SyncAgent", name, None, opts)
        self._name, self._args = name, args
        self._labels = dict(args.labels)
        self._selector = {
            "app.kubernetes.io/name": "sync",
            "app.kubernetes.io/part-of": "meterplane",
        }
        self._meta = {
            "name": "sync",
            "namespace": names.SHARED_NAMESPACE,
            "labels": {**self._labels, **self._selector},
        }
        account = k8s.core.v1.ServiceAccount(
            f"{name}-sa",
            metadata=self._meta,
            automount_service_account_token=False,
            opts=pulumi.ResourceOptions(parent=self),
        )
        self._build_deployment(account)
        self.network_policy = self._build_network_policy()
        self.register_outputs({})

    def _storage(
        self,
    ) -> tuple[list[pulumi.Resource], list[dict[str, Any]], list[dict[str, Any]], dict[str, str]]:
        """Claims, volumes, mounts and environment for the agent's local state."""
        name, args = self._name, self._args
        claims: list[pulumi.Resource] = [self._claim(f"{name}-state", "sync-state", "10Gi")]
        volumes = [{"name": "state", "persistentVolumeClaim": {"claimName": "sync-state"}}]
        mounts = [{"name": "state", "mountPath": f"{STATE_MOUNT}/state"}]
        environment = {
            "METERPLANE_CONTROL_PLANE_URL": args.control_plane_url,
            "METERPLANE_CONTROL_PLANE_ENVIRONMENT": args.environment_id,
            "METERPLANE_DATA_DIR": f"{STATE_MOUNT}/state",
        }
        if args.local_customer_data:
            # Catalog and subscriptions pushed by the control plane, materialized locally.
            claims.append(self._claim(f"{name}-customer-data", "sync-customer-data", "5Gi"))
            volumes.append(
                {
                    "name": "customer-data",
                    "persistentVolumeClaim": {"claimName": "sync-customer-data"},
                }
            )
            mounts.append({"name": "customer-data", "mountPath": f"{STATE_MOUNT}/customer-data"})
            environment["METERPLANE_CATALOG"] = f"{STATE_MOUNT}/customer-data/catalog.yaml"
        return claims, volumes, mounts, environment

    def _build_deployment(self, account: k8s.core.v1.ServiceAccount) -> None:
        claims, volumes, mounts, environment = self._storage()
        container = app_container(
            "sync",
            self._args.release,
            environment,
            cpu=quantity(SYNC_AGENT_CPU),
            memory="512Mi",
            api_keys=False,
        )
        container["volumeMounts"] = [*container["volumeMounts"], *mounts]
        container["env"] = [
            *container["env"],
            {
                "name": "METERPLANE_CONTROL_PLANE_TOKEN",
                "valueFrom": {"secretKeyRef": {"name": CONTROL_PLANE_SECRET, "key": "token"}},
            },
            # Read-only: the agent reads the rollups and nothing else (see ClickHouse).
            *pods.clickhouse_env(names.CLICKHOUSE_URL, names.CLICKHOUSE_READER),
        ]
        tmp_volume, _ = pods.scratch_volume()
        k8s.apps.v1.Deployment(
            f"{self._name}-deployment",
            metadata=self._meta,
            spec={
                "replicas": 1,
                "selector": {"matchLabels": self._selector},
                "strategy": {"type": "Recreate"},
                "template": {
                    "metadata": {"labels": self._selector},
                    "spec": {
                        "serviceAccountName": "sync",
                        "automountServiceAccountToken": False,
                        "securityContext": pods.pod_security_context(),
                        "containers": [container],
                        "volumes": [tmp_volume, *volumes],
                    },
                },
            },
            opts=pulumi.ResourceOptions(parent=self, depends_on=[account, *claims]),
        )

    def _build_network_policy(self) -> k8s.networking.v1.NetworkPolicy:
        return k8s.networking.v1.NetworkPolicy(
            f"{self._name}-netpol",
            metadata=self._meta,
            spec={
                "podSelector": {"matchLabels": self._selector},
                "policyTypes": ["Ingress", "Egress"],
                "ingress": [],
                "egress": egress_rules(self._args.egress_cidrs, self._args.control_plane_port),
            },
            opts=pulumi.ResourceOptions(parent=self),
        )

    def _claim(
        self, resource_name: str, claim: str, size: str
    ) -> k8s.core.v1.PersistentVolumeClaim:
        return k8s.core.v1.PersistentVolumeClaim(
            resource_name,
            metadata={
                "name": claim,
                "namespace": names.SHARED_NAMESPACE,
                "labels": self._labels,
                # WaitForFirstConsumer binds only once the pod exists, which depends on this
                # claim: waiting for "Bound" here would deadlock the update.
                "annotations": {"pulumi.com/skipAwait": "true"},
            },
            spec={
                "accessModes": ["ReadWriteOnce"],
                "storageClassName": names.STORAGE_CLASS,
                "resources": {"requests": {"storage": size}},
            },
            opts=pulumi.ResourceOptions(parent=self),
        )
