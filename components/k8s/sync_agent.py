"""The sync agent in ``shared``: the data plane's only path to the vendor.

Its NetworkPolicy admits no ingress at all (the agent opens every connection, DESIGN.md 6)
and allows egress only to cluster DNS and the control plane's published address ranges
on its HTTPS port. One replica with ``Recreate``: the change cursor and the outbox live on
its volume, and two agents would send the same rollups twice.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from ipaddress import IPv4Network
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from components.k8s import names, pods
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


def egress_rules(cidrs: tuple[IPv4Network, ...], port: int) -> list[dict[str, Any]]:
    """DNS to kube-dns, and HTTPS to the control plane's ranges: nothing else."""
    return [
        {
            "to": [
                {
                    "namespaceSelector": {
                        "matchLabels": {"kubernetes.io/metadata.name": "kube-system"}
                    },
                    "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}},
                }
            ],
            "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}],
        },
        {
            "to": [{"ipBlock": {"cidr": str(cidr)}} for cidr in cidrs],
            "ports": [{"protocol": "TCP", "port": port}],
        },
    ]


class SyncAgent(pulumi.ComponentResource):
    """Outbound-only link between the customer's data plane and the vendor."""

    def __init__(
        self, name: str, args: SyncAgentArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("meterplane:k8s:SyncAgent", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        ns = names.SHARED_NAMESPACE
        labels = {"app.kubernetes.io/name": "sync", "app.kubernetes.io/part-of": "meterplane"}
        self._labels = dict(args.labels)
        meta = {"name": "sync", "namespace": ns, "labels": {**self._labels, **labels}}
        account = k8s.core.v1.ServiceAccount(
            f"{name}-sa", metadata=meta, automount_service_account_token=False, opts=child
        )
        claims = [self._claim(f"{name}-state", "sync-state", "10Gi")]
        environment = {
            "METERPLANE_CONTROL_PLANE_URL": args.control_plane_url,
            "METERPLANE_CONTROL_PLANE_ENVIRONMENT": args.environment_id,
            "METERPLANE_DATA_DIR": f"{STATE_MOUNT}/state",
        }
        volumes: list[dict[str, Any]] = [
            {"name": "state", "persistentVolumeClaim": {"claimName": "sync-state"}}
        ]
        mounts: list[dict[str, Any]] = [{"name": "state", "mountPath": f"{STATE_MOUNT}/state"}]
        if args.local_customer_data:
            # Catalog and subscriptions pushed by the control plane, materialized locally.
            claims.append(self._claim(f"{name}-customer-data", "sync-customer-data", "5Gi"))
            environment["METERPLANE_CATALOG"] = f"{STATE_MOUNT}/customer-data/catalog.yaml"
            volumes.append(
                {
                    "name": "customer-data",
                    "persistentVolumeClaim": {"claimName": "sync-customer-data"},
                }
            )
            mounts.append({"name": "customer-data", "mountPath": f"{STATE_MOUNT}/customer-data"})
        container = app_container(
            "sync",
            args.release,
            environment,
            cpu=quantity(SYNC_AGENT_CPU),
            memory="512Mi",
            api_keys=False,
        )
        container["volumeMounts"] = [*container["volumeMounts"], *mounts]
        tmp_volume, _ = pods.scratch_volume()
        k8s.apps.v1.Deployment(
            f"{name}-deployment",
            metadata=meta,
            spec={
                "replicas": 1,
                "selector": {"matchLabels": labels},
                "strategy": {"type": "Recreate"},
                "template": {
                    "metadata": {"labels": labels},
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
        self.network_policy = k8s.networking.v1.NetworkPolicy(
            f"{name}-netpol",
            metadata=meta,
            spec={
                "podSelector": {"matchLabels": labels},
                "policyTypes": ["Ingress", "Egress"],
                "ingress": [],
                "egress": egress_rules(args.egress_cidrs, args.control_plane_port),
            },
            opts=child,
        )
        self.register_outputs({})

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
