"""The app's HTTP services (ingest, entitlements): Deployment, Service, PDB, HPA.

Each runs ``meterplane <command>`` from the release's app image, non-root with a read-only
root filesystem, spread over zones, with a PodDisruptionBudget so node drains never take
more than one replica at a time, and an HPA on CPU for bursts.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from components import versions
from components.k8s import names, pods
from components.k8s.sizing import APP_SERVICE_CPU, quantity

# Rolling updates: wait for endpoint removal, then the server's graceful drain
# (uvicorn timeout_graceful_shutdown in meterplane serve/ingest), then a margin.
PRE_STOP_S = 5
DRAIN_S = 25


@dataclass(frozen=True)
class AppServiceArgs:
    """One service: its command, scale, environment and resources."""

    command: str
    release: str
    replicas: int
    max_replicas: int
    environment: Mapping[str, str]
    prod: bool
    cpu: str = quantity(APP_SERVICE_CPU)
    memory: str = "1Gi"
    namespace: str = names.METERING_NAMESPACE
    api_keys: bool = True
    # ClickHouse's URL, when the service reads or writes it (as the writer user).
    clickhouse_url: str | None = None
    extra_labels: Mapping[str, str] = field(default_factory=dict)
    # The stack's common labels (customer, environment, managed-by) for every object.
    labels: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not 1 <= self.replicas <= self.max_replicas:
            raise ValueError("AppServiceArgs: need 1 <= replicas <= max_replicas")


def app_container(
    command: str,
    release: str,
    environment: Mapping[str, str],
    cpu: str,
    memory: str,
    api_keys: bool,
    clickhouse_url: str | None = None,
) -> dict[str, Any]:
    """The hardened app container running ``meterplane <command>``."""
    _, tmp_mount = pods.scratch_volume()
    env_entries: list[dict[str, Any]] = pods.env(
        {
            "METERPLANE_HTTP_HOST": "0.0.0.0",  # noqa: S104 listen on the pod network
            "METERPLANE_HTTP_PORT": str(names.HTTP_PORT),
            **environment,
        }
    )
    if api_keys:
        env_entries.append(pods.api_keys_env())
    if clickhouse_url is not None:
        env_entries += pods.clickhouse_env(clickhouse_url, names.CLICKHOUSE_WRITER)
    return {
        "name": command,
        "image": versions.app_image(release),
        "imagePullPolicy": "IfNotPresent",
        "args": [command],
        "ports": [{"name": "http", "containerPort": names.HTTP_PORT, "protocol": "TCP"}],
        "env": env_entries,
        "readinessProbe": pods.http_probe(names.READINESS_PATH, period=5, failure_threshold=3),
        "livenessProbe": pods.http_probe(names.LIVENESS_PATH, period=10, failure_threshold=6),
        "resources": pods.resources(
            cpu, memory, cpu_limit=str(int(float(cpu) * 2)) if cpu.isdigit() else None
        ),
        "securityContext": pods.container_security_context(),
        "volumeMounts": [tmp_mount],
    }


class AppService(pulumi.ComponentResource):
    """A horizontally scaled, zone-spread HTTP service of the app."""

    deployment: k8s.apps.v1.Deployment

    def __init__(
        self, name: str, args: AppServiceArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("meterplane:k8s:AppService", name, None, opts)
        self._name, self._args = name, args
        self._selector = {
            "app.kubernetes.io/name": args.command,
            "app.kubernetes.io/part-of": "meterplane",
        }
        self._meta = {
            "name": args.command,
            "namespace": args.namespace,
            "labels": {**args.labels, **self._selector},
        }
        account = k8s.core.v1.ServiceAccount(
            f"{name}-sa",
            metadata=self._meta,
            automount_service_account_token=False,
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.deployment = self._build_deployment(account)
        self._build_service()
        self._build_disruption_budget()
        self._build_autoscaler()
        self.register_outputs({})

    def _build_deployment(self, account: k8s.core.v1.ServiceAccount) -> k8s.apps.v1.Deployment:
        args, selector = self._args, self._selector
        tmp_volume, _ = pods.scratch_volume()
        container = app_container(
            args.command,
            args.release,
            args.environment,
            args.cpu,
            args.memory,
            args.api_keys,
            args.clickhouse_url,
        )
        # On SIGTERM the server stops accepting and drains in-flight batches (25 s). The
        # Service keeps routing to the pod until the endpoint removal has propagated, so
        # the pod waits PRE_STOP_S before the signal; the grace period covers both.
        container["lifecycle"] = {"preStop": {"sleep": {"seconds": PRE_STOP_S}}}
        return k8s.apps.v1.Deployment(
            f"{self._name}-deployment",
            metadata=self._meta,
            spec={
                "replicas": args.replicas,
                "revisionHistoryLimit": 5,
                "selector": {"matchLabels": selector},
                "strategy": {
                    "type": "RollingUpdate",
                    "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1},
                },
                "template": {
                    "metadata": {
                        "labels": {**selector, **dict(args.extra_labels)},
                        "annotations": {
                            "prometheus.io/scrape": "true",
                            "prometheus.io/port": str(names.HTTP_PORT),
                            "prometheus.io/path": names.METRICS_PATH,
                        },
                    },
                    "spec": {
                        "serviceAccountName": args.command,
                        "automountServiceAccountToken": False,
                        "securityContext": pods.pod_security_context(),
                        "topologySpreadConstraints": pods.zone_spread(selector, hard=args.prod),
                        "terminationGracePeriodSeconds": PRE_STOP_S + DRAIN_S + 5,
                        "containers": [container],
                        "volumes": [tmp_volume],
                    },
                },
            },
            # The HPA owns the replica count after creation; re-applying it would fight it.
            opts=pulumi.ResourceOptions(
                parent=self, depends_on=[account], ignore_changes=["spec.replicas"]
            ),
        )

    def _build_service(self) -> None:
        k8s.core.v1.Service(
            f"{self._name}-service",
            metadata=self._meta,
            spec={
                "type": "ClusterIP",
                "selector": self._selector,
                "ports": [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}],
            },
            opts=pulumi.ResourceOptions(parent=self),
        )

    def _build_disruption_budget(self) -> None:
        # Drains and node upgrades take at most one replica at a time.
        k8s.policy.v1.PodDisruptionBudget(
            f"{self._name}-pdb",
            metadata=self._meta,
            spec={"maxUnavailable": 1, "selector": {"matchLabels": self._selector}},
            opts=pulumi.ResourceOptions(parent=self),
        )

    def _build_autoscaler(self) -> None:
        args = self._args
        k8s.autoscaling.v2.HorizontalPodAutoscaler(
            f"{self._name}-hpa",
            metadata=self._meta,
            spec={
                "scaleTargetRef": {
                    "apiVersion": "apps/v1",
                    "kind": "Deployment",
                    "name": args.command,
                },
                "minReplicas": args.replicas,
                "maxReplicas": args.max_replicas,
                "metrics": [
                    {
                        "type": "Resource",
                        "resource": {
                            "name": "cpu",
                            "target": {"type": "Utilization", "averageUtilization": 70},
                        },
                    }
                ],
            },
            opts=pulumi.ResourceOptions(parent=self),
        )
