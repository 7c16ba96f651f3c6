"""Egress of the ``metering`` namespace: denied by default, opened per need.

Only the sync agent (in ``shared``) may leave the cluster, and only to the control plane.
In ``metering`` every pod gets DNS and its own namespace (Kafka, ClickHouse, Keeper and
the services talk to each other); pods labelled ``meterplane.io/egress-kube-api`` (the
Flink job manager, Strimzi's entity operator) reach the API server, and pods labelled
``meterplane.io/egress-object-store`` (Flink, the archiver) reach the archive bucket
through the cloud's private endpoints and the node-local identity endpoint. None of these
ranges is the control plane's, and none is 0.0.0.0/0.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from components.k8s import names
from components.k8s.target import EgressRule

KUBE_API_LABEL = "meterplane.io/egress-kube-api"
OBJECT_STORE_LABEL = "meterplane.io/egress-object-store"


@dataclass(frozen=True)
class MeteringEgressArgs:
    """Where the API server and the object store are reachable, per cloud."""

    kube_api: Sequence[EgressRule]
    object_store: Sequence[EgressRule]
    labels: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.kube_api or not self.object_store:
            raise ValueError("MeteringEgressArgs: kube_api and object_store need rules")


def dns_rule() -> dict[str, Any]:
    """Egress to kube-dns only."""
    return {
        "to": [
            {
                "namespaceSelector": {
                    "matchLabels": {"kubernetes.io/metadata.name": "kube-system"}
                },
                "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}},
            }
        ],
        "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}],
    }


def _rules(rules: Sequence[EgressRule]) -> list[dict[str, Any]]:
    return [
        {
            "to": [{"ipBlock": {"cidr": rule.cidr}}],
            "ports": [{"protocol": "TCP", "port": rule.port}],
        }
        for rule in rules
    ]


class MeteringEgress(pulumi.ComponentResource):
    """The NetworkPolicies that fence in the ``metering`` namespace."""

    def __init__(
        self, name: str, args: MeteringEgressArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("meterplane:k8s:MeteringEgress", name, None, opts)
        self._name = name
        self._labels = dict(args.labels)
        self._policy("default-deny-egress", {}, [dns_rule()])
        self._policy("allow-namespace", {}, [{"to": [{"podSelector": {}}]}])
        self._policy("allow-kube-api", {KUBE_API_LABEL: "true"}, _rules(args.kube_api))
        self._policy("allow-object-store", {OBJECT_STORE_LABEL: "true"}, _rules(args.object_store))
        self.register_outputs({})

    def _policy(
        self, policy: str, selector: dict[str, str], egress: list[dict[str, Any]]
    ) -> k8s.networking.v1.NetworkPolicy:
        return k8s.networking.v1.NetworkPolicy(
            f"{self._name}-{policy}",
            metadata={
                "name": policy,
                "namespace": names.METERING_NAMESPACE,
                "labels": self._labels,
            },
            spec={
                "podSelector": {"matchLabels": selector} if selector else {},
                "policyTypes": ["Egress"],
                "egress": egress,
            },
            opts=pulumi.ResourceOptions(parent=self),
        )
