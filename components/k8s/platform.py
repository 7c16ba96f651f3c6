"""Namespaces, the expandable storage class and the pinned operator Helm releases.

Operators are Helm ``Release``s (real Helm: CRDs and hooks work) in one operators
namespace, each watching only ``metering``. cert-manager goes first because the Flink
operator's webhook needs a certificate. The storage class allows volume expansion and
binds a volume only when its pod is scheduled (``WaitForFirstConsumer``), so a zonal disk
is created in the zone where the pod landed; ``Retain`` keeps data if a claim is deleted.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from components import versions
from components.k8s import names


@dataclass(frozen=True)
class PlatformArgs:
    """Storage driver of the cloud and whether production redundancy applies."""

    storage_provisioner: str
    storage_parameters: Mapping[str, pulumi.Input[str]]
    prod: bool
    # The stack's common labels (customer, environment, managed-by) for every object.
    labels: Mapping[str, str] = field(default_factory=dict)


class Platform(pulumi.ComponentResource):
    """Everything the engines and services need before they can be declared."""

    def __init__(
        self, name: str, args: PlatformArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("meterplane:k8s:Platform", name, None, opts)
        self._name = name
        self._labels = dict(args.labels)
        self.namespaces = {
            ns: self._namespace(ns, enforce)
            for ns, enforce in (
                (names.METERING_NAMESPACE, "baseline"),
                (names.SHARED_NAMESPACE, "restricted"),
                (names.OPERATORS_NAMESPACE, "baseline"),
            )
        }
        self.storage_class = k8s.storage.v1.StorageClass(
            f"{name}-ssd",
            metadata={"name": names.STORAGE_CLASS, "labels": self._labels},
            provisioner=args.storage_provisioner,
            parameters=dict(args.storage_parameters),
            allow_volume_expansion=True,
            volume_binding_mode="WaitForFirstConsumer",
            reclaim_policy="Retain",
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.operators = self._build_operators(args.prod)
        self.register_outputs({})

    def _namespace(self, namespace: str, enforce: str) -> k8s.core.v1.Namespace:
        return k8s.core.v1.Namespace(
            f"{self._name}-ns-{namespace}",
            metadata={
                "name": namespace,
                "labels": {
                    **self._labels,
                    "app.kubernetes.io/part-of": "meterplane",
                    "pod-security.kubernetes.io/enforce": enforce,
                    "pod-security.kubernetes.io/warn": "restricted",
                },
            },
            opts=pulumi.ResourceOptions(parent=self),
        )

    def _release(
        self,
        key: str,
        chart: versions.HelmChart,
        values: dict[str, Any],
        depends_on: list[pulumi.Resource],
    ) -> k8s.helm.v3.Release:
        return k8s.helm.v3.Release(
            f"{self._name}-{key}",
            name=key,
            chart=chart.chart,
            version=chart.version,
            repository_opts={"repo": chart.repository} if chart.repository else None,
            namespace=names.OPERATORS_NAMESPACE,
            create_namespace=False,
            atomic=True,
            cleanup_on_fail=True,
            skip_crds=False,
            timeout=900,
            values=values,
            opts=pulumi.ResourceOptions(
                parent=self,
                depends_on=[self.namespaces[names.OPERATORS_NAMESPACE], *depends_on],
            ),
        )

    def _build_operators(self, prod: bool) -> dict[str, k8s.helm.v3.Release]:
        replicas = 2 if prod else 1
        watched = [names.METERING_NAMESPACE]
        cert_manager = self._release(
            "cert-manager",
            versions.CERT_MANAGER,
            {"crds": {"enabled": True, "keep": True}, "replicaCount": replicas},
            [],
        )
        return {
            "cert-manager": cert_manager,
            "strimzi": self._release(
                "strimzi",
                versions.STRIMZI,
                {"watchNamespaces": watched, "replicas": replicas},
                [],
            ),
            "flink-operator": self._release(
                "flink-operator",
                versions.FLINK_OPERATOR,
                {
                    "watchNamespaces": watched,
                    "webhook": {"create": True},
                    # The FlinkDeployment's service account is ours (it carries the identity).
                    "jobServiceAccount": {"create": False},
                },
                [cert_manager],
            ),
            "clickhouse-operator": self._release(
                "clickhouse-operator",
                versions.CLICKHOUSE_OPERATOR,
                {"configs": {"files": {"config.yaml": {"watch": {"namespaces": watched}}}}},
                [],
            ),
        }
