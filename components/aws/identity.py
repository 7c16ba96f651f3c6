"""An IAM role for one Kubernetes service account (EKS Pod Identity), scoped to the bucket.

The role's only permissions are on the archive bucket and its objects, and on the key
that encrypts them; the trust policy admits only the Pod Identity service, and the
association binds it to exactly one namespace/service-account pair.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws


@dataclass(frozen=True)
class WorkloadIdentityArgs:
    """Which service account gets access, and to which bucket and key."""

    cluster_name: pulumi.Input[str]
    namespace: str
    service_account: str
    bucket_arn: pulumi.Input[str]
    key_arn: pulumi.Input[str]
    tags: dict[str, str]


class WorkloadIdentity(pulumi.ComponentResource):
    """Bucket-scoped AWS identity of a pod."""

    role_arn: pulumi.Output[str]

    def __init__(
        self, name: str, args: WorkloadIdentityArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("meterplane:aws:WorkloadIdentity", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        role = aws.iam.Role(
            f"{name}-role",
            assume_role_policy=json.dumps(
                {
                    "Version": "2012-10-17",
                    "Statement": [
                        {
                            "Effect": "Allow",
                            "Principal": {"Service": "pods.eks.amazonaws.com"},
                            "Action": ["sts:AssumeRole", "sts:TagSession"],
                        }
                    ],
                }
            ),
            tags=args.tags,
            opts=child,
        )
        aws.iam.RolePolicy(
            f"{name}-bucket",
            role=role.name,
            policy=pulumi.Output.all(args.bucket_arn, args.key_arn).apply(
                lambda a: bucket_only_policy(a[0], a[1])
            ),
            opts=child,
        )
        aws.eks.PodIdentityAssociation(
            f"{name}-association",
            cluster_name=args.cluster_name,
            namespace=args.namespace,
            service_account=args.service_account,
            role_arn=role.arn,
            tags=args.tags,
            opts=child,
        )
        self.role_arn = role.arn
        self.register_outputs({"roleArn": self.role_arn})


def bucket_only_policy(bucket_arn: str, key_arn: str) -> str:
    """IAM policy granting object access to one bucket and use of its key, nothing more."""
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Sid": "ListArchive",
                    "Effect": "Allow",
                    "Action": ["s3:ListBucket", "s3:GetBucketLocation"],
                    "Resource": [bucket_arn],
                },
                {
                    "Sid": "ReadWriteArchive",
                    "Effect": "Allow",
                    "Action": [
                        "s3:GetObject",
                        "s3:PutObject",
                        "s3:DeleteObject",
                        "s3:AbortMultipartUpload",
                        "s3:ListMultipartUploadParts",
                    ],
                    "Resource": [f"{bucket_arn}/*"],
                },
                {
                    "Sid": "UseArchiveKey",
                    "Effect": "Allow",
                    "Action": ["kms:Decrypt", "kms:GenerateDataKey", "kms:DescribeKey"],
                    "Resource": [key_arn],
                },
            ],
        }
    )
