"""The aggregation job: a FlinkDeployment (Flink Kubernetes Operator) from the job image.

Kubernetes HA keeps job-manager leadership and checkpoint pointers in ConfigMaps; HA
metadata, checkpoints and savepoints go to the customer's bucket, so a lost zone or a
lost job manager resumes from the last checkpoint. ``upgradeMode: last-state`` upgrades
from the latest checkpoint without needing the job to be healthy enough for a savepoint.
The job's service account carries the bucket-scoped cloud identity.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from components import versions
from components.k8s import names, pods
from components.k8s.network_policies import KUBE_API_LABEL, OBJECT_STORE_LABEL
from components.k8s.sizing import (
    FLINK_JOBMANAGER_CPU,
    FLINK_SLOTS_PER_TASKMANAGER,
    FLINK_TASKMANAGER_CPU,
)
from components.k8s.target import PodIdentity


@dataclass(frozen=True)
class FlinkJobArgs:
    """Release, parallelism and state location of the job."""

    release: str
    parallelism: int
    taskmanagers: int
    state_url: pulumi.Input[str]  # bucket URL; the job writes under <state_url>/flink/...
    identity: PodIdentity
    kafka_bootstrap: str
    clickhouse_url: str
    prod: bool
    plugins: str = ""
    # The operator release whose CRDs these custom resources need.
    operator: pulumi.Resource | None = None
    extra_configuration: Mapping[str, pulumi.Input[str]] = field(default_factory=dict)
    # The stack's common labels (customer, environment, managed-by) for every object.
    labels: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.parallelism < 1 or self.taskmanagers < 1:
            raise ValueError("FlinkJobArgs: parallelism and taskmanagers must be positive")


UPGRADE_MODE = "last-state"
FLINK_UID = 9999  # the flink user of the official image
CHECKPOINT_INTERVAL = "10 s"


_SELECTOR = {"app.kubernetes.io/name": "aggregate", "app.kubernetes.io/part-of": "meterplane"}


def flink_configuration(args: FlinkJobArgs) -> dict[str, pulumi.Input[str]]:
    """HA, checkpoints and savepoints under ``<state_url>/flink``; exactly-once checkpoints."""
    state = pulumi.Output.from_input(args.state_url).apply(lambda u: u.rstrip("/") + "/flink")
    return {
        "taskmanager.numberOfTaskSlots": str(FLINK_SLOTS_PER_TASKMANAGER),
        "high-availability.type": "kubernetes",
        "high-availability.storageDir": state.apply(lambda s: f"{s}/ha"),
        "state.checkpoints.dir": state.apply(lambda s: f"{s}/checkpoints"),
        "state.savepoints.dir": state.apply(lambda s: f"{s}/savepoints"),
        "state.backend.type": "rocksdb",
        "state.backend.incremental": "true",
        "execution.checkpointing.interval": CHECKPOINT_INTERVAL,
        "execution.checkpointing.mode": "EXACTLY_ONCE",
        "execution.checkpointing.externalized-checkpoint-retention": "RETAIN_ON_CANCELLATION",
        "restart-strategy.type": "exponential-delay",
        "kubernetes.operator.job.upgrade.last-state-fallback.enabled": "true",
        **dict(args.extra_configuration),
    }


def pod_template(args: FlinkJobArgs) -> dict[str, Any]:
    """Hardened job- and task-manager pods with the job's identity and egress labels."""
    environment = [
        *pods.env(
            {
                "METERPLANE_KAFKA_BOOTSTRAP": args.kafka_bootstrap,
                **({"ENABLE_BUILT_IN_PLUGINS": args.plugins} if args.plugins else {}),
            }
        ),
        *pods.clickhouse_env(args.clickhouse_url, names.CLICKHOUSE_WRITER),
    ]
    return {
        "metadata": {
            "labels": {
                **_SELECTOR,
                **dict(args.identity.pod_labels),
                # HA leader election (API) and state in the bucket.
                KUBE_API_LABEL: "true",
                OBJECT_STORE_LABEL: "true",
            }
        },
        "spec": {
            "securityContext": {
                "runAsNonRoot": True,
                "runAsUser": FLINK_UID,
                "fsGroup": FLINK_UID,
                "seccompProfile": {"type": "RuntimeDefault"},
            },
            "volumes": [
                {"name": "tmp", "emptyDir": {"sizeLimit": "10Gi"}},
                {"name": "logs", "emptyDir": {"sizeLimit": "2Gi"}},
            ],
            "topologySpreadConstraints": pods.zone_spread(_SELECTOR, hard=args.prod),
            "containers": [
                {
                    "name": "flink-main-container",
                    "env": environment,
                    "securityContext": {
                        "runAsNonRoot": True,
                        "runAsUser": FLINK_UID,
                        "readOnlyRootFilesystem": True,
                        "allowPrivilegeEscalation": False,
                        "capabilities": {"drop": ["ALL"]},
                    },
                    # Read-only root: logs and scratch (PyFlink's workers, RocksDB spill)
                    # live on emptyDirs.
                    "volumeMounts": [
                        {"name": "tmp", "mountPath": "/tmp"},  # noqa: S108 an emptyDir
                        {"name": "logs", "mountPath": "/opt/flink/log"},
                    ],
                }
            ],
        },
    }


class FlinkJob(pulumi.ComponentResource):
    """The PyFlink aggregation job and the service account it runs as."""

    deployment: k8s.apiextensions.CustomResource

    def __init__(
        self, name: str, args: FlinkJobArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("meterplane:k8s:FlinkJob", name, None, opts)
        self._name = name
        self._labels = dict(args.labels)
        account = self._build_rbac(args.identity)
        self.deployment = self._build_deployment(args, account)
        self.register_outputs({})

    def _build_deployment(
        self, args: FlinkJobArgs, account: k8s.core.v1.ServiceAccount
    ) -> k8s.apiextensions.CustomResource:
        return k8s.apiextensions.CustomResource(
            f"{self._name}-deployment",
            api_version=versions.FLINK_API,
            kind="FlinkDeployment",
            metadata={
                "name": names.FLINK_DEPLOYMENT,
                "namespace": names.METERING_NAMESPACE,
                "labels": {**self._labels, **_SELECTOR},
            },
            spec={
                "image": versions.flink_job_image(args.release),
                "imagePullPolicy": "IfNotPresent",
                "flinkVersion": versions.FLINK_VERSION_ENUM,
                "serviceAccount": names.FLINK_SERVICE_ACCOUNT,
                "flinkConfiguration": flink_configuration(args),
                "podTemplate": pod_template(args),
                "jobManager": {
                    "replicas": 2 if args.prod else 1,
                    "resource": {"cpu": FLINK_JOBMANAGER_CPU, "memory": "2048m"},
                },
                "taskManager": {
                    "replicas": args.taskmanagers,
                    "resource": {"cpu": FLINK_TASKMANAGER_CPU, "memory": "8192m"},
                },
                "job": {
                    "jarURI": f"local:///opt/flink/opt/flink-python-{versions.FLINK_VERSION}.jar",
                    "entryClass": names.FLINK_PYTHON_DRIVER,
                    "args": ["-pym", names.FLINK_JOB_MODULE],
                    "parallelism": args.parallelism,
                    "upgradeMode": UPGRADE_MODE,
                    "state": "running",
                },
            },
            opts=pulumi.ResourceOptions(
                parent=self, depends_on=[account, *([args.operator] if args.operator else [])]
            ),
        )

    def _build_rbac(self, identity: PodIdentity) -> k8s.core.v1.ServiceAccount:
        name, child = self._name, pulumi.ResourceOptions(parent=self)
        account = k8s.core.v1.ServiceAccount(
            f"{name}-sa",
            metadata={
                "name": names.FLINK_SERVICE_ACCOUNT,
                "namespace": names.METERING_NAMESPACE,
                "annotations": dict(identity.service_account_annotations),
                "labels": {**self._labels, **dict(identity.pod_labels)},
            },
            opts=child,
        )
        # The job manager creates task-manager pods and keeps HA state in ConfigMaps.
        role = k8s.rbac.v1.Role(
            f"{name}-role",
            metadata={
                "name": "flink",
                "namespace": names.METERING_NAMESPACE,
                "labels": self._labels,
            },
            rules=[
                {
                    "apiGroups": [""],
                    "resources": ["pods", "configmaps", "services"],
                    "verbs": ["get", "list", "watch", "create", "update", "patch", "delete"],
                },
                {
                    "apiGroups": ["apps"],
                    "resources": ["deployments"],
                    "verbs": ["get", "list", "watch"],
                },
            ],
            opts=child,
        )
        k8s.rbac.v1.RoleBinding(
            f"{name}-binding",
            metadata={
                "name": "flink",
                "namespace": names.METERING_NAMESPACE,
                "labels": self._labels,
            },
            role_ref={"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "flink"},
            subjects=[
                {
                    "kind": "ServiceAccount",
                    "name": names.FLINK_SERVICE_ACCOUNT,
                    "namespace": names.METERING_NAMESPACE,
                }
            ],
            opts=pulumi.ResourceOptions(parent=self, depends_on=[role]),
        )
        return account
