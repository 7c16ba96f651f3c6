"""Encryption policies: customer key on every bucket (v7 join), cluster secrets, rotation."""

from __future__ import annotations

from typing import Any

import pytest
from policytest_support import STACK, assert_level_override, messages, res

from policies.core import UNKNOWN

KEY = res("aws:kms/key:Key", "key", {"enableKeyRotation": True}, id="1234abcd-key")
KEY_ARN = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-key"
BUCKET = res(
    "aws:s3/bucket:Bucket", "archive", {"bucket": "acme-prod-archive"}, id="acme-prod-archive"
)


def sse(rule: dict[str, Any], bucket: str = "acme-prod-archive", name: str = "sse") -> Any:
    return res(
        "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration",
        name,
        {"bucket": bucket, "rules": [rule]},
    )


def kms_rule(key: Any = KEY_ARN) -> dict[str, Any]:
    default = {"sseAlgorithm": "aws:kms"}
    if key is not None:
        default["kmsMasterKeyId"] = key
    return {"applyServerSideEncryptionByDefault": default, "bucketKeyEnabled": True}


# --- bucket-customer-key -------------------------------------------------------------


def test_s3_bucket_joined_to_sse_with_the_stack_key_passes() -> None:
    assert messages("bucket-customer-key", [KEY, BUCKET, sse(kms_rule())]) == []


def test_s3_join_by_property_dependency_when_values_are_unknown() -> None:
    # During a preview the bucket name and key ARN are unknown; the engine's property
    # dependencies still say which bucket and key the configuration points at.
    config = res(
        "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration",
        "sse",
        {"bucket": UNKNOWN, "rules": [kms_rule(UNKNOWN)]},
        dependencies={"bucket": (BUCKET.urn,), "rules": (KEY.urn,)},
    )
    assert messages("bucket-customer-key", [KEY, BUCKET, config]) == []


@pytest.mark.parametrize(
    ("rule", "expected"),
    [
        ({"applyServerSideEncryptionByDefault": {"sseAlgorithm": "AES256"}}, "uses AES256"),
        (kms_rule(None), "AWS-managed aws/s3 key"),
        (kms_rule("arn:aws:kms:us-east-1:999999999999:key/other"), "not a customer-managed key"),
    ],
)
def test_s3_bucket_not_under_the_customer_key_fails(rule: dict[str, Any], expected: str) -> None:
    found = messages("bucket-customer-key", [KEY, BUCKET, sse(rule)])
    assert len(found) == 1
    assert "Bucket archive" in found[0]
    assert expected in found[0]


def test_s3_bucket_without_any_encryption_resource_fails() -> None:
    # The SSE configuration belongs to another bucket: this one has none.
    other = sse(kms_rule(), bucket="someone-else")
    found = messages("bucket-customer-key", [KEY, BUCKET, other])
    assert found == [
        "Bucket archive has no server-side encryption configuration "
        "(no aws.s3.BucketServerSideEncryptionConfiguration joined to it)"
    ]


def test_configured_existing_key_counts_as_the_customer_key() -> None:
    existing = "arn:aws:kms:us-east-1:123456789012:key/existing"
    stack = {**STACK, "archive": {**STACK["archive"], "kmsKeyId": existing}}
    assert messages("bucket-customer-key", [BUCKET, sse(kms_rule(existing))], stack=stack) == []
    assert messages("bucket-customer-key", [BUCKET, sse(kms_rule(existing))]) != []


def test_kms_alias_of_a_stack_key_counts() -> None:
    alias = res(
        "aws:kms/alias:Alias", "alias", {"name": "alias/acme", "targetKeyId": "1234abcd-key"}
    )
    assert messages("bucket-customer-key", [KEY, alias, BUCKET, sse(kms_rule("alias/acme"))]) == []


def test_gcs_bucket_cmek() -> None:
    key = res(
        "gcp:kms/cryptoKey:CryptoKey",
        "key",
        {"rotationPeriod": "7776000s"},
        id="projects/p/locations/us/keyRings/r/cryptoKeys/k",
    )
    good = res(
        "gcp:storage/bucket:Bucket", "archive", {"encryption": {"defaultKmsKeyName": key.id}}
    )
    missing = res("gcp:storage/bucket:Bucket", "plain", {})
    found = messages("bucket-customer-key", [key, good, missing])
    assert found == ["Bucket plain has no CMEK (encryption.defaultKmsKeyName is not set)"]


def test_azure_storage_account_customer_key() -> None:
    key = res("azure-native:keyvault:Key", "key", {"keyName": "archive"})
    good = res(
        "azure-native:storage:StorageAccount",
        "good",
        {
            "encryption": {
                "keySource": "Microsoft.Keyvault",
                "keyVaultProperties": {
                    "keyName": "archive",
                    "keyVaultUri": "https://v.vault.azure.net",
                },
            }
        },
    )
    managed = res(
        "azure-native:storage:StorageAccount",
        "managed",
        {"encryption": {"keySource": "Microsoft.Storage"}},
    )
    missing = res("azure-native:storage:StorageAccount", "missing", {})
    found = messages("bucket-customer-key", [key, good, managed, missing])
    assert len(found) == 2
    assert "StorageAccount managed is encrypted with Microsoft-managed keys" in found[0]
    assert "StorageAccount missing" in found[1]


def test_bucket_customer_key_level_override() -> None:
    assert_level_override("bucket-customer-key", [KEY, BUCKET, sse(kms_rule(None))])


# --- cluster-secrets-encryption ------------------------------------------------------

EKS_OK = {"encryptionConfig": {"provider": {"keyArn": KEY_ARN}, "resources": ["secrets"]}}


@pytest.mark.parametrize(
    ("kind", "props"),
    [
        ("aws:eks/cluster:Cluster", EKS_OK),
        (
            "gcp:container/cluster:Cluster",
            {"databaseEncryption": {"state": "ENCRYPTED", "keyName": "k"}},
        ),
        (
            "azure-native:containerservice:ManagedCluster",
            {"securityProfile": {"azureKeyVaultKms": {"enabled": True, "keyId": "https://k"}}},
        ),
    ],
)
def test_cluster_secrets_encrypted_passes(kind: str, props: dict[str, Any]) -> None:
    assert messages("cluster-secrets-encryption", [res(kind, "cluster", props)]) == []


@pytest.mark.parametrize(
    ("kind", "props", "expected"),
    [
        (
            "aws:eks/cluster:Cluster",
            {"encryptionConfig": {"provider": {"keyArn": KEY_ARN}, "resources": []}},
            "does not include secrets",
        ),
        (
            "gcp:container/cluster:Cluster",
            {"databaseEncryption": {"state": "DECRYPTED"}},
            "state is DECRYPTED",
        ),
        (
            "azure-native:containerservice:ManagedCluster",
            {"securityProfile": {"azureKeyVaultKms": {"enabled": False}}},
            "azureKeyVaultKms",
        ),
    ],
)
def test_cluster_secrets_not_encrypted_fails(
    kind: str, props: dict[str, Any], expected: str
) -> None:
    found = messages("cluster-secrets-encryption", [res(kind, "cluster", props)])
    assert len(found) == 1
    assert expected in found[0]


def test_cluster_without_encryption_config_fails() -> None:
    found = messages("cluster-secrets-encryption", [res("aws:eks/cluster:Cluster", "cluster", {})])
    assert found == ["Cluster cluster does not encrypt secrets (encryptionConfig is not set)"]


def test_cluster_secrets_level_override() -> None:
    assert_level_override("cluster-secrets-encryption", [res("aws:eks/cluster:Cluster", "c", {})])


# --- kms-key-rotation ----------------------------------------------------------------


def test_rotating_keys_pass() -> None:
    keys = [
        KEY,
        res("gcp:kms/cryptoKey:CryptoKey", "gk", {"rotationPeriod": "7776000s"}),
        res(
            "azure-native:keyvault:Key",
            "ak",
            {
                "properties": {
                    "rotationPolicy": {
                        "lifetimeActions": [
                            {"action": {"type": "rotate"}, "trigger": {"timeAfterCreate": "P90D"}}
                        ]
                    }
                }
            },
        ),
    ]
    assert messages("kms-key-rotation", keys) == []


def test_non_rotating_keys_fail() -> None:
    keys = [
        res("aws:kms/key:Key", "off", {"enableKeyRotation": False}),
        res("gcp:kms/cryptoKey:CryptoKey", "slow", {"rotationPeriod": "63072000s"}),
        res(
            "azure-native:keyvault:Key",
            "none",
            {"properties": {"rotationPolicy": {"lifetimeActions": []}}},
        ),
    ]
    found = messages("kms-key-rotation", keys)
    assert len(found) == 3
    assert "Key off does not rotate" in found[0]
    assert "more than 365 days" in found[1]
    assert "no rotation policy" in found[2]


def test_key_without_rotation_property_fails_and_asymmetric_keys_are_exempt() -> None:
    missing = res("aws:kms/key:Key", "missing", {})
    asymmetric = res("aws:kms/key:Key", "signing", {"customerMasterKeySpec": "RSA_2048"})
    assert messages("kms-key-rotation", [missing, asymmetric]) == [
        "Key missing does not rotate (enableKeyRotation is not true)"
    ]


def test_kms_rotation_max_days_option() -> None:
    key = res("gcp:kms/cryptoKey:CryptoKey", "gk", {"rotationPeriod": "7776000s"})  # 90 days
    assert messages("kms-key-rotation", [key], {"maxRotationDays": 30}) != []
    assert messages("kms-key-rotation", [key], {"maxRotationDays": 90}) == []
    assert_level_override("kms-key-rotation", [res("aws:kms/key:Key", "off", {})])


# --- key-vault-purge-protection --------------------------------------------------------


def test_key_vault_purge_protection() -> None:
    good = res(
        "azure-native:keyvault:Vault", "good", {"properties": {"enablePurgeProtection": True}}
    )
    off = res(
        "azure-native:keyvault:Vault", "off", {"properties": {"enablePurgeProtection": False}}
    )
    missing = res("azure-native:keyvault:Vault", "missing", {"properties": {}})
    found = messages("key-vault-purge-protection", [good, off, missing])
    assert [message.split(" has ")[0] for message in found] == ["Vault off", "Vault missing"]
    assert_level_override("key-vault-purge-protection", [off])
