"""The pre-upgrade schema migration: a Job running ``meterplane migrate`` from the release.

Every app workload of the stack depends on this component, so on an upgrade Pulumi runs
the new release's migrations to completion (the Kubernetes provider waits for a Job to
succeed and fails the update if it does not) before any Deployment or the Flink job moves
to the new image. The Job's name carries the release, so each release gets its own Job:
bumping ``release.version`` replaces it (the new one runs, then the old one is deleted),
and re-applying an unchanged stack leaves it alone. Migrations themselves are numbered,
forward only and recorded in ``schema_migrations``, so a rerun is a no-op.

Not managed here: rollbacks. Migrations only add (``IF NOT EXISTS``), so the previous
release keeps working on the newer schema and a rollback is just the older image.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import pulumi
import pulumi_kubernetes as k8s

from components import versions
from components.k8s import names, pods

_NOT_DNS = re.compile(r"[^a-z0-9-]+")


def job_name(release: str) -> str:
    """``migrate-<release>`` as a DNS label (``1.4.0-rc.1`` → ``migrate-1-4-0-rc-1``)."""
    slug = _NOT_DNS.sub("-", release.lower()).strip("-")
    return f"migrate-{slug}"[:63].rstrip("-")


@dataclass(frozen=True)
class SchemaMigrationArgs:
    """Which release migrates which ClickHouse, and how long it may take."""

    release: str
    clickhouse_url: str
    namespace: str = names.METERING_NAMESPACE
    # A ClickHouse cluster: the database is created Replicated (first creator decides).
    replicated: bool = False
    backoff_limit: int = 4
    deadline_seconds: int = 1800
    labels: Mapping[str, str] = field(default_factory=dict)
    # What must exist before the Job starts (ClickHouse); the Job's own dependencies, since
    # a component's depends_on does not reach its children.
    wait_for: Sequence[pulumi.Resource] = ()

    def __post_init__(self) -> None:
        if not self.release:
            raise ValueError("SchemaMigrationArgs: release is required")
        if self.backoff_limit < 0 or self.deadline_seconds < 60:
            raise ValueError("SchemaMigrationArgs: backoff_limit >= 0, deadline_seconds >= 60")


class SchemaMigration(pulumi.ComponentResource):
    """A one-shot Job applying the release's ClickHouse migrations before the workloads."""

    def __init__(
        self, name: str, args: SchemaMigrationArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("meterplane:k8s:SchemaMigration", name, None, opts)
        labels = {
            **args.labels,
            "app.kubernetes.io/name": "migrate",
            "app.kubernetes.io/part-of": "meterplane",
        }
        tmp_volume, tmp_mount = pods.scratch_volume()
        container = {
            "name": "migrate",
            "image": versions.app_image(args.release),
            "imagePullPolicy": "IfNotPresent",
            # ClickHouse may still be starting on a first install: wait for it, then migrate.
            "args": ["migrate", "--wait", "600", *(["--replicated"] if args.replicated else [])],
            "env": [
                *pods.env({"METERPLANE_LOG_LEVEL": "INFO"}),
                *pods.clickhouse_env(args.clickhouse_url, names.CLICKHOUSE_WRITER),
            ],
            "resources": pods.resources("250m", "256Mi"),
            "securityContext": pods.container_security_context(),
            "volumeMounts": [tmp_mount],
        }
        self.job = k8s.batch.v1.Job(
            f"{name}-job",
            metadata={
                "name": job_name(args.release),
                "namespace": args.namespace,
                "labels": labels,
            },
            spec={
                "backoffLimit": args.backoff_limit,
                "activeDeadlineSeconds": args.deadline_seconds,
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {
                        "restartPolicy": "Never",
                        "automountServiceAccountToken": False,
                        "securityContext": pods.pod_security_context(),
                        "containers": [container],
                        "volumes": [tmp_volume],
                    },
                },
            },
            # The Job is immutable once created; a new release replaces it (new name), and
            # the provider waits for it to complete before dependents start.
            opts=pulumi.ResourceOptions(parent=self, depends_on=list(args.wait_for)),
        )
        self.register_outputs({})

    def runs_first(self) -> pulumi.ResourceTransformation:
        """A transformation for a component's options: every custom resource inside it waits
        for this Job.

        ``depends_on`` on a component orders the component, not its children (they would
        roll to the new image while the migration still runs); a transformation on the
        component reaches every child it creates, without the component knowing.
        """
        job = self.job

        def wait_for_job(
            args: pulumi.ResourceTransformationArgs,
        ) -> pulumi.ResourceTransformationResult | None:
            if not isinstance(args.resource, pulumi.CustomResource):
                return None
            opts = pulumi.ResourceOptions.merge(args.opts, pulumi.ResourceOptions(depends_on=[job]))
            return pulumi.ResourceTransformationResult(args.props, opts)

        return wait_for_job
