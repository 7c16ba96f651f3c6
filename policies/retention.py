"""Retention: the cold-tier bucket expires objects exactly at the stack's ``retentionDays``.

Keeping raw events longer than the customer agreed is a compliance problem; deleting them
sooner loses the reconcile path (``meterplane rebuild`` reads the cold tier). The lifecycle
rule is the only thing that deletes archived events, so it must match
``archive.retentionDays``. pulumi-aws v7 models the rule as a separate
``BucketLifecycleConfiguration`` joined by bucket name; Azure as a ``ManagementPolicy``
joined by account name.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from policies.core import (
    Context,
    PolicySpec,
    Resource,
    Severity,
    Violation,
    as_list,
    as_number,
    get,
    is_true,
    of_type,
    refers_to,
    short,
)
from policies.encryption import AWS_BUCKET, AZURE_STORAGE_ACCOUNT, GCP_BUCKET

AWS_LIFECYCLE = "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration"
AZURE_MANAGEMENT_POLICY = "azure-native:storage:ManagementPolicy"


def _aws_expirations(bucket: Resource, resources: Sequence[Resource]) -> list[float] | None:
    names = [bucket.props.get("bucket"), bucket.id]
    configs = [
        config
        for config in of_type(resources, AWS_LIFECYCLE)
        if refers_to(config, "bucket", config.props.get("bucket"), bucket, names)
    ]
    if not configs:
        return None
    days: list[float] = []
    for config in configs:
        for rule in as_list(config.props.get("rules")):
            value = as_number(get(rule, "expiration.days"))
            if get(rule, "status") == "Enabled" and value is not None:
                days.append(value)
    return days


def _gcp_expirations(bucket: Resource) -> list[float] | None:
    rules = as_list(bucket.props.get("lifecycleRules"))
    if not rules:
        return None
    days: list[float] = []
    for rule in rules:
        age = as_number(get(rule, "condition.age"))
        if get(rule, "action.type") == "Delete" and age is not None:
            days.append(age)
    return days


def _azure_expirations(account: Resource, resources: Sequence[Resource]) -> list[float] | None:
    names = [account.props.get("accountName")]
    policies = [
        policy
        for policy in of_type(resources, AZURE_MANAGEMENT_POLICY)
        if refers_to(policy, "accountName", policy.props.get("accountName"), account, names)
    ]
    if not policies:
        return None
    days: list[float] = []
    for policy in policies:
        for rule in as_list(get(policy.props, "policy.rules")):
            enabled = get(rule, "enabled", True)
            delete = get(rule, "definition.actions.baseBlob.delete")
            for key in ("daysAfterModificationGreaterThan", "daysAfterCreationGreaterThan"):
                value = as_number(get(delete, key))
                if value is not None and (enabled is True or is_true(enabled)):
                    days.append(value)
    return days


def cold_tier_lifecycle(resources: Sequence[Resource], context: Context) -> Iterator[Violation]:
    """Each bucket has an enabled expiration rule at exactly ``archive.retentionDays``."""
    retention = as_number(get(context.stack, "archive.retentionDays"))
    exempt = {str(name) for name in context.option("exemptBuckets")}
    buckets: list[tuple[Resource, list[float] | None, str]] = [
        (bucket, _aws_expirations(bucket, resources), "aws.s3.BucketLifecycleConfiguration")
        for bucket in of_type(resources, AWS_BUCKET)
    ]
    buckets += [
        (bucket, _gcp_expirations(bucket), "lifecycleRules")
        for bucket in of_type(resources, GCP_BUCKET)
    ]
    buckets += [
        (account, _azure_expirations(account, resources), "azure-native.storage.ManagementPolicy")
        for account in of_type(resources, AZURE_STORAGE_ACCOUNT)
    ]
    for bucket, expirations, carrier in buckets:
        if bucket.name in exempt:
            continue
        if expirations is None:
            yield Violation(f"{short(bucket)} has no lifecycle rule ({carrier})", bucket.urn)
        elif not expirations:
            yield Violation(f"{short(bucket)} lifecycle has no enabled expiration", bucket.urn)
        elif retention is not None and retention not in expirations:
            found = ", ".join(f"{days:.0f}" for days in sorted(set(expirations)))
            yield Violation(
                f"{short(bucket)} expires objects after {found} day(s); the stack's "
                f"archive.retentionDays is {retention:.0f}",
                bucket.urn,
            )


POLICIES: tuple[PolicySpec, ...] = (
    PolicySpec(
        name="cold-tier-lifecycle",
        description="The cold-tier bucket expires objects at the stack's retentionDays.",
        domain="retention",
        severity=Severity.HIGH,
        remediation=(
            "Add an enabled expiration rule with days = archive.retentionDays: "
            "aws.s3.BucketLifecycleConfiguration, a GCS lifecycle Delete rule with "
            "condition.age, or an Azure ManagementPolicy baseBlob.delete rule."
        ),
        validate_stack=cold_tier_lifecycle,
        options={
            "exemptBuckets": {
                "type": "array",
                "items": {"type": "string"},
                "default": [],
                "description": "Bucket resource names that are not the cold tier.",
            }
        },
        mirrors=("CKV2_AWS_61",),
    ),
)
