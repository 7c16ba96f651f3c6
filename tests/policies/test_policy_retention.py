"""Retention policy: the cold-tier lifecycle rule matches archive.retentionDays (v7 join)."""

from __future__ import annotations

from typing import Any

from policytest_support import STACK, assert_level_override, messages, res

BUCKET = res(
    "aws:s3/bucket:Bucket", "archive", {"bucket": "acme-prod-archive"}, id="acme-prod-archive"
)


def lifecycle(days: float, status: str = "Enabled", bucket: str = "acme-prod-archive") -> Any:
    rule = {"id": "expire", "status": status, "filter": {}, "expiration": {"days": days}}
    return res(
        "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration",
        "lifecycle",
        {"bucket": bucket, "rules": [rule]},
    )


def test_expiration_at_retention_days_passes() -> None:
    assert messages("cold-tier-lifecycle", [BUCKET, lifecycle(730.0)]) == []


def test_expiration_not_matching_retention_fails() -> None:
    assert messages("cold-tier-lifecycle", [BUCKET, lifecycle(365.0)]) == [
        "Bucket archive expires objects after 365 day(s); the stack's archive.retentionDays is 730"
    ]
    assert messages("cold-tier-lifecycle", [BUCKET, lifecycle(730.0, status="Disabled")]) == [
        "Bucket archive lifecycle has no enabled expiration"
    ]


def test_missing_lifecycle_fails() -> None:
    assert messages("cold-tier-lifecycle", [BUCKET, lifecycle(730.0, bucket="other")]) == [
        "Bucket archive has no lifecycle rule (aws.s3.BucketLifecycleConfiguration)"
    ]


def test_gcs_and_azure_lifecycles() -> None:
    gcs_ok = res(
        "gcp:storage/bucket:Bucket",
        "gcs-ok",
        {"lifecycleRules": [{"action": {"type": "Delete"}, "condition": {"age": 730.0}}]},
    )
    gcs_bad = res(
        "gcp:storage/bucket:Bucket",
        "gcs-bad",
        {"lifecycleRules": [{"action": {"type": "SetStorageClass"}, "condition": {"age": 30.0}}]},
    )
    account = res("azure-native:storage:StorageAccount", "acct", {"accountName": "acmeprodarchive"})
    policy = res(
        "azure-native:storage:ManagementPolicy",
        "mp",
        {
            "accountName": "acmeprodarchive",
            "policy": {
                "rules": [
                    {
                        "name": "expire",
                        "enabled": True,
                        "type": "Lifecycle",
                        "definition": {
                            "actions": {
                                "baseBlob": {"delete": {"daysAfterModificationGreaterThan": 730.0}}
                            }
                        },
                    }
                ]
            },
        },
    )
    lonely = res("azure-native:storage:StorageAccount", "lonely", {"accountName": "lonely"})
    found = messages("cold-tier-lifecycle", [gcs_ok, gcs_bad, account, policy, lonely])
    assert found == [
        "Bucket gcs-bad lifecycle has no enabled expiration",
        "StorageAccount lonely has no lifecycle rule (azure-native.storage.ManagementPolicy)",
    ]


def test_without_stack_config_any_expiration_is_accepted() -> None:
    assert messages("cold-tier-lifecycle", [BUCKET, lifecycle(365.0)], stack={}) == []
    other_retention = {**STACK, "archive": {"hotRetentionDays": 35, "retentionDays": 365}}
    assert messages("cold-tier-lifecycle", [BUCKET, lifecycle(365.0)], stack=other_retention) == []


def test_retention_options_and_level_override() -> None:
    assert messages("cold-tier-lifecycle", [BUCKET], {"exemptBuckets": ["archive"]}) == []
    assert_level_override("cold-tier-lifecycle", [BUCKET])
