"""The archiver: an hourly CronJob exporting partitions older than the hot retention.

Runs ``meterplane archive`` as the ``archiver`` service account, which alone (with Flink)
holds the bucket-scoped cloud identity. ``concurrencyPolicy: Forbid`` because two
exporters of one partition would race to drop it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import pulumi
import pulumi_kubernetes as k8s

from components.k8s import names, pods
from components.k8s.network_policies import OBJECT_STORE_LABEL
from components.k8s.services import app_container
from components.k8s.target import PodIdentity


@dataclass(frozen=True)
class ArchiverArgs:
    """Release, identity and environment of the archiver."""

    release: str
    identity: PodIdentity
    environment: Mapping[str, pulumi.Input[str]]
    clickhouse_url: str
    schedule: str = "17 * * * *"
    # The stack's common labels (customer, environment, managed-by) for every object.
    labels: Mapping[str, str] = field(default_factory=dict)


class Archiver(pulumi.ComponentResource):
    """CronJob that moves cold partitions to the customer's bucket."""

    def __init__(
        self, name: str, args: ArchiverArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("meterplane:k8s:Archiver", name, None, opts)
        labels = {"app.kubernetes.io/name": "archive", "app.kubernetes.io/part-of": "meterplane"}
        account = k8s.core.v1.ServiceAccount(
            f"{name}-sa",
            metadata={
                "name": names.ARCHIVER_SERVICE_ACCOUNT,
                "namespace": names.METERING_NAMESPACE,
                "labels": {**args.labels, **labels, **dict(args.identity.pod_labels)},
                "annotations": dict(args.identity.service_account_annotations),
            },
            opts=pulumi.ResourceOptions(parent=self),
        )
        container = app_container(
            "archive", args.release, {}, cpu="1", memory="2Gi", api_keys=False
        )
        # No HTTP server in a batch job: no port, no probes.
        for key in ("ports", "readinessProbe", "livenessProbe"):
            container.pop(key)
        container["env"] = [
            *pods.env(dict(args.environment)),
            *pods.clickhouse_env(args.clickhouse_url, names.CLICKHOUSE_WRITER),
        ]
        tmp_volume, _ = pods.scratch_volume()
        k8s.batch.v1.CronJob(
            f"{name}-cronjob",
            metadata={
                "name": "archive",
                "namespace": names.METERING_NAMESPACE,
                "labels": {**args.labels, **labels},
            },
            spec={
                "schedule": args.schedule,
                "timeZone": "Etc/UTC",
                "concurrencyPolicy": "Forbid",
                "startingDeadlineSeconds": 600,
                "successfulJobsHistoryLimit": 3,
                "failedJobsHistoryLimit": 5,
                "jobTemplate": {
                    "spec": {
                        "backoffLimit": 3,
                        "activeDeadlineSeconds": 3300,
                        "template": {
                            "metadata": {
                                "labels": {
                                    **labels,
                                    **dict(args.identity.pod_labels),
                                    OBJECT_STORE_LABEL: "true",
                                }
                            },
                            "spec": {
                                "serviceAccountName": names.ARCHIVER_SERVICE_ACCOUNT,
                                "restartPolicy": "Never",
                                "securityContext": pods.pod_security_context(),
                                "containers": [container],
                                "volumes": [tmp_volume],
                            },
                        },
                    }
                },
            },
            opts=pulumi.ResourceOptions(parent=self, depends_on=[account]),
        )
        self.register_outputs({})
