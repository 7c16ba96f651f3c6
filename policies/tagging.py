"""Labels and tags: every resource that takes them names customer, environment and manager.

The data plane lives in the customer's own account next to the customer's other
infrastructure; tags are how their billing, inventory and incident tooling tell which
resources are Meterplane's, for which environment, and that Pulumi (not a console click)
owns them. Where the tags live depends on the provider: ``tags`` (AWS, Azure), ``labels`` /
``resourceLabels`` (GCP), ``metadata.labels`` (Kubernetes).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from policies.core import (
    Context,
    PolicySpec,
    Resource,
    Severity,
    as_mapping,
    get,
    is_unknown,
    short,
)

# AWS resources without a ``tags`` input (checked against the SDK in the tests).
AWS_UNTAGGED = frozenset(
    {
        "aws:ec2/mainRouteTableAssociation:MainRouteTableAssociation",
        "aws:ec2/route:Route",
        "aws:ec2/routeTableAssociation:RouteTableAssociation",
        "aws:ec2/securityGroupRule:SecurityGroupRule",
        "aws:ec2/vpcEndpointRouteTableAssociation:VpcEndpointRouteTableAssociation",
        "aws:eks/accessPolicyAssociation:AccessPolicyAssociation",
        "aws:iam/rolePolicy:RolePolicy",
        "aws:iam/rolePolicyAttachment:RolePolicyAttachment",
        "aws:kms/alias:Alias",
        "aws:kms/keyPolicy:KeyPolicy",
        "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration",
        "aws:s3/bucketOwnershipControls:BucketOwnershipControls",
        "aws:s3/bucketPolicy:BucketPolicy",
        "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock",
        "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration",
        "aws:s3/bucketVersioning:BucketVersioning",
    }
)

# GCP resources that take labels, and where (most GCP resources take none).
GCP_LABELS = {
    "gcp:container/cluster:Cluster": "resourceLabels",
    "gcp:container/nodePool:NodePool": "nodeConfig.resourceLabels",
    "gcp:storage/bucket:Bucket": "labels",
    "gcp:kms/cryptoKey:CryptoKey": "labels",
    "gcp:compute/address:Address": "labels",
    "gcp:secretmanager/secret:Secret": "labels",
}

# Azure resources that are not ARM "tracked" resources and so take no tags.
AZURE_UNTAGGED = frozenset(
    {
        "azure-native:authorization:RoleAssignment",
        "azure-native:managedidentity:FederatedIdentityCredential",
        "azure-native:network:PrivateDnsZoneGroup",
        "azure-native:network:Subnet",
        "azure-native:storage:BlobServiceProperties",
        "azure-native:storage:BlobContainer",
        "azure-native:storage:ManagementPolicy",
    }
)

# Kubernetes types that are not Kubernetes objects (no metadata).
K8S_UNLABELLED = frozenset(
    {
        "kubernetes:helm.sh/v3:Release",
        "kubernetes:helm.sh/v4:Chart",
        "kubernetes:yaml:ConfigFile",
        "kubernetes:yaml:ConfigGroup",
        "kubernetes:yaml/v2:ConfigFile",
        "kubernetes:yaml/v2:ConfigGroup",
    }
)


def label_path(resource: Resource) -> str | None:
    """Where ``resource`` carries its tags or labels, or None when it takes none."""
    kind = resource.type
    if kind.startswith("aws:") and not kind.startswith("aws:index/"):
        return None if kind in AWS_UNTAGGED else "tags"
    if kind.startswith("gcp:"):
        if kind in GCP_LABELS:
            return GCP_LABELS[kind]
        return "labels" if "labels" in resource.props else None
    if kind.startswith("azure-native:"):
        return None if kind in AZURE_UNTAGGED else "tags"
    if kind.startswith("kubernetes:") and ":" in kind[len("kubernetes:") :]:
        return None if kind in K8S_UNLABELLED else "metadata.labels"
    return None


def _first(labels: Mapping[str, Any], keys: list[str]) -> tuple[str | None, Any]:
    for key in keys:
        if key in labels:
            return key, labels[key]
    return None, None


def required_labels(resource: Resource, context: Context) -> Iterator[str]:
    """The resource's tags name the customer, the environment and the managing tool."""
    path = label_path(resource)
    if path is None:
        return
    raw = get(resource.props, path)
    if is_unknown(raw):
        return
    labels = as_mapping(raw)
    keys: Mapping[str, list[str]] = context.option("keys")
    expected = {
        "customer": get(context.stack, "customer"),
        "environment": get(context.stack, "environment"),
        "managedBy": context.option("managedBy"),
    }
    problems: list[str] = []
    for role, aliases in keys.items():
        key, value = _first(labels, [str(alias) for alias in aliases])
        want = expected.get(role)
        if key is None:
            problems.append(f"no {role} label ({' or '.join(str(a) for a in aliases)})")
        elif is_unknown(value):
            continue
        elif want is not None and str(value).lower() != str(want).lower():
            problems.append(f"{key}={value} (expected {want})")
    if problems:
        yield f"{short(resource)} {path}: " + "; ".join(problems)


POLICIES: tuple[PolicySpec, ...] = (
    PolicySpec(
        name="required-labels",
        description=(
            "Every resource that takes tags or labels names customer, environment and "
            "the managing tool."
        ),
        domain="tagging",
        severity=Severity.LOW,
        remediation=(
            "Pass the stack's common tags (customer, environment, managed-by: pulumi) to "
            "every resource; Kubernetes objects carry them as metadata.labels."
        ),
        validate_resource=required_labels,
        options={
            "keys": {
                "type": "object",
                "additionalProperties": {"type": "array", "items": {"type": "string"}},
                "default": {
                    # Colons are legal in AWS and Azure tag keys, not in GCP or
                    # Kubernetes label keys: each provider finds one form it accepts.
                    "customer": ["customer", "meterplane:customer", "meterplane.io/customer"],
                    "environment": [
                        "environment",
                        "meterplane:environment",
                        "meterplane.io/environment",
                    ],
                    "managedBy": [
                        "managed-by",
                        "meterplane:managed-by",
                        "app.kubernetes.io/managed-by",
                    ],
                },
                "description": "Accepted label keys per role (customer, environment, managedBy).",
            },
            "managedBy": {
                "type": "string",
                "default": "pulumi",
                "description": "Required value of the managed-by label.",
            },
        },
    ),
)
