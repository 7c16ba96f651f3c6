"""A Google service account for one Kubernetes service account, scoped to the bucket.

Its only grant is ``roles/storage.objectAdmin`` on the archive bucket (a bucket-level
binding, not a project one); Workload Identity lets exactly one namespace/service-account
pair impersonate it. Encryption is the bucket's default CMEK, so no key grant is needed.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_gcp as gcp


@dataclass(frozen=True)
class WorkloadIdentityArgs:
    """Which Kubernetes service account, and which bucket."""

    project: str
    workload_pool: str
    namespace: str
    service_account: str
    bucket_name: pulumi.Input[str]


class WorkloadIdentity(pulumi.ComponentResource):
    """Bucket-scoped GCP identity of a pod."""

    email: pulumi.Output[str]

    def __init__(
        self, name: str, args: WorkloadIdentityArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("meterplane:gcp:WorkloadIdentity", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        account = gcp.serviceaccount.Account(
            f"{name}-account",
            project=args.project,
            account_id=name[:30].rstrip("-"),
            display_name=f"{args.namespace}/{args.service_account}",
            opts=child,
        )
        gcp.storage.BucketIAMMember(
            f"{name}-bucket",
            bucket=args.bucket_name,
            role="roles/storage.objectAdmin",
            member=account.email.apply(lambda e: f"serviceAccount:{e}"),
            opts=child,
        )
        gcp.serviceaccount.IAMMember(
            f"{name}-workload-identity",
            service_account_id=account.name,
            role="roles/iam.workloadIdentityUser",
            member=f"serviceAccount:{args.workload_pool}[{args.namespace}/{args.service_account}]",
            opts=child,
        )
        self.email = account.email
        self.register_outputs({"email": self.email})
