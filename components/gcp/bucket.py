"""The cold-tier GCS bucket: CMEK, uniform access, public access prevented, expiring.

No retention-policy lock: locks are irreversible and would stop the archiver's verified
re-uploads; expiry is a lifecycle ``age`` rule instead. The storage service agent must
already hold encrypt/decrypt on the key (``depends_on``), or the bucket creation fails.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pulumi
import pulumi_gcp as gcp


@dataclass(frozen=True)
class ArchiveBucketArgs:
    """Name, location, key and retention of the bucket."""

    project: str
    bucket_name: str
    location: str
    key_id: pulumi.Input[str]
    retention_days: int
    labels: dict[str, str]
    depends_on: Sequence[pulumi.Resource] = ()

    def __post_init__(self) -> None:
        if self.retention_days < 1:
            raise ValueError("ArchiveBucketArgs.retention_days must be positive")


class ArchiveBucket(pulumi.ComponentResource):
    """The customer's archive of raw events."""

    name: pulumi.Output[str]

    def __init__(
        self, name: str, args: ArchiveBucketArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("meterplane:gcp:ArchiveBucket", name, None, opts)
        self.bucket = gcp.storage.Bucket(
            f"{name}-bucket",
            project=args.project,
            name=args.bucket_name,
            location=args.location,
            storage_class="STANDARD",
            force_destroy=False,
            labels=args.labels,
            uniform_bucket_level_access=True,
            public_access_prevention="enforced",
            versioning={"enabled": True},
            encryption={"default_kms_key_name": args.key_id},
            lifecycle_rules=[
                {"action": {"type": "Delete"}, "condition": {"age": args.retention_days}},
                # Versioning keeps replaced objects; drop those after a week.
                {"action": {"type": "Delete"}, "condition": {"days_since_noncurrent_time": 7}},
            ],
            opts=pulumi.ResourceOptions(parent=self, depends_on=list(args.depends_on)),
        )
        self.name = self.bucket.name
        self.register_outputs({"name": self.name})
