"""Encryption under the customer's own key: buckets, cluster secrets, key rotation.

The cold tier holds every raw event the customer ever sent; it must be readable only with a
key the customer controls (and can revoke). In pulumi-aws v7 a bucket's encryption lives in
a separate ``BucketServerSideEncryptionConfiguration`` joined to the bucket by name, so the
bucket check is a stack policy that performs that join.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence

from policies.core import (
    Context,
    PolicySpec,
    Resource,
    Severity,
    Violation,
    as_list,
    get,
    is_true,
    is_unknown,
    of_type,
    refers_to,
    short,
)

AWS_BUCKET = "aws:s3/bucket:Bucket"
AWS_BUCKET_SSE = (
    "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration"
)
AWS_KMS_KEY = "aws:kms/key:Key"
AWS_KMS_ALIAS = "aws:kms/alias:Alias"
GCP_BUCKET = "gcp:storage/bucket:Bucket"
GCP_CRYPTO_KEY = "gcp:kms/cryptoKey:CryptoKey"
AZURE_STORAGE_ACCOUNT = "azure-native:storage:StorageAccount"
AZURE_KEY = "azure-native:keyvault:Key"
AZURE_VAULT = "azure-native:keyvault:Vault"
EKS_CLUSTER = "aws:eks/cluster:Cluster"
GKE_CLUSTER = "gcp:container/cluster:Cluster"
AKS_CLUSTER = "azure-native:containerservice:ManagedCluster"

_KMS_ALGORITHMS = frozenset({"aws:kms", "aws:kms:dsse"})


def _key_aliases(key: Resource) -> list[object]:
    """Every string another resource may use to name ``key`` (ARN, key id, key name)."""
    return [key.props.get(prop) for prop in ("arn", "keyId", "keyName", "name")]


def _customer_key_reference(
    source: Resource, prop: str, value: object, resources: Sequence[Resource], context: Context
) -> bool:
    """Does ``value`` (in ``source.prop``) name a customer-managed key?

    A key the stack manages itself, an alias of one, or the existing key the stack was
    configured with (``archive.kmsKeyId``). An unknown value counts as a reference: it
    can only be a computed output, never an AWS-managed default.
    """
    if is_unknown(value):
        return True
    configured = get(context.stack, "archive.kmsKeyId")
    if isinstance(value, str) and configured and value == configured:
        return True
    keys = list(of_type(resources, AWS_KMS_KEY, GCP_CRYPTO_KEY, AZURE_KEY))
    if any(refers_to(source, prop, value, key, _key_aliases(key)) for key in keys):
        return True
    for alias in of_type(resources, AWS_KMS_ALIAS):
        if value in (alias.props.get("name"), alias.props.get("arn"), alias.id):
            target = alias.props.get("targetKeyId")
            if any(refers_to(alias, "targetKeyId", target, key, _key_aliases(key)) for key in keys):
                return True
    return False


def _joined(resources: Sequence[Resource], kind: str, bucket: Resource) -> list[Resource]:
    """The v7 side resources of ``kind`` that point at ``bucket`` through ``bucket``."""
    names = [bucket.props.get("bucket"), bucket.id]
    return [
        side
        for side in of_type(resources, kind)
        if refers_to(side, "bucket", side.props.get("bucket"), bucket, names)
    ]


def _aws_bucket_rules(
    resources: Sequence[Resource], bucket: Resource
) -> list[tuple[Resource, object]]:
    """Each encryption rule that applies to ``bucket``, with the resource that declares it."""
    rules = [
        (sse, rule)
        for sse in _joined(resources, AWS_BUCKET_SSE, bucket)
        for rule in as_list(sse.props.get("rules"))
    ]
    # The deprecated inline block still works in v7; accept it rather than miss a key.
    inline = get(bucket.props, "serverSideEncryptionConfiguration.rule")
    if inline is not None:
        rules.append((bucket, inline))
    return rules


def _check_aws_bucket(
    bucket: Resource, resources: Sequence[Resource], context: Context
) -> Iterator[str]:
    rules = _aws_bucket_rules(resources, bucket)
    if not rules:
        yield (
            f"{short(bucket)} has no server-side encryption configuration "
            "(no aws.s3.BucketServerSideEncryptionConfiguration joined to it)"
        )
        return
    problems: list[str] = []
    for owner, rule in rules:
        algorithm = get(rule, "applyServerSideEncryptionByDefault.sseAlgorithm")
        key = get(rule, "applyServerSideEncryptionByDefault.kmsMasterKeyId")
        if is_unknown(algorithm):
            return
        prop = "rules" if owner is not bucket else "serverSideEncryptionConfiguration"
        if algorithm not in _KMS_ALGORITHMS:
            problems.append(f"uses {algorithm or 'no algorithm'} instead of aws:kms")
        elif not key:
            problems.append("uses the AWS-managed aws/s3 key instead of the customer's key")
        elif _customer_key_reference(owner, prop, key, resources, context):
            return
        else:
            problems.append(f"uses key {key}, which is not a customer-managed key of this stack")
    yield f"{short(bucket)} is not encrypted under the customer's KMS key: " + "; ".join(problems)


def _check_gcp_bucket(
    bucket: Resource, resources: Sequence[Resource], context: Context
) -> Iterator[str]:
    key = get(bucket.props, "encryption.defaultKmsKeyName")
    if not key:
        yield f"{short(bucket)} has no CMEK (encryption.defaultKmsKeyName is not set)"
    elif not _customer_key_reference(bucket, "encryption", key, resources, context):
        yield f"{short(bucket)} uses key {key}, which is not a customer-managed key of this stack"


def _check_azure_account(
    account: Resource, resources: Sequence[Resource], context: Context
) -> Iterator[str]:
    source = get(account.props, "encryption.keySource")
    key_name = get(account.props, "encryption.keyVaultProperties.keyName")
    vault_uri = get(account.props, "encryption.keyVaultProperties.keyVaultUri")
    if is_unknown(source):
        return
    if not isinstance(source, str) or source.lower() != "microsoft.keyvault":
        yield (
            f"{short(account)} is encrypted with Microsoft-managed keys "
            f"(encryption.keySource is {source or 'not set'}, not Microsoft.Keyvault)"
        )
    elif not key_name or not vault_uri:
        yield f"{short(account)} names no Key Vault key (encryption.keyVaultProperties)"
    elif not _customer_key_reference(account, "encryption", key_name, resources, context):
        yield f"{short(account)} uses key {key_name}, which is not a key of this stack's vault"


def bucket_customer_key(resources: Sequence[Resource], context: Context) -> Iterator[Violation]:
    """Every bucket (S3, GCS, Azure storage account) is encrypted under a customer key."""
    checks = (
        (AWS_BUCKET, _check_aws_bucket),
        (GCP_BUCKET, _check_gcp_bucket),
        (AZURE_STORAGE_ACCOUNT, _check_azure_account),
    )
    for kind, check in checks:
        for bucket in of_type(resources, kind):
            for message in check(bucket, resources, context):
                yield Violation(message, bucket.urn)


def cluster_secrets_encryption(resource: Resource, context: Context) -> Iterator[str]:
    """Kubernetes secrets (etcd) are envelope-encrypted with a customer key."""
    props = resource.props
    if resource.type == EKS_CLUSTER:
        config = props.get("encryptionConfig")
        if not config:
            yield f"{short(resource)} does not encrypt secrets (encryptionConfig is not set)"
            return
        if "secrets" not in as_list(get(config, "resources")) and not is_unknown(
            get(config, "resources")
        ):
            yield f"{short(resource)} encryptionConfig.resources does not include secrets"
        if not get(config, "provider.keyArn"):
            yield f"{short(resource)} encryptionConfig names no KMS key (provider.keyArn)"
    elif resource.type == GKE_CLUSTER:
        state = get(props, "databaseEncryption.state")
        if is_unknown(state):
            return
        if state != "ENCRYPTED" or not get(props, "databaseEncryption.keyName"):
            yield (
                f"{short(resource)} does not encrypt secrets with Cloud KMS "
                f"(databaseEncryption.state is {state or 'not set'}, keyName "
                f"{'set' if get(props, 'databaseEncryption.keyName') else 'not set'})"
            )
    elif resource.type == AKS_CLUSTER:
        kms = get(props, "securityProfile.azureKeyVaultKms")
        if not kms or not is_true(get(kms, "enabled")) or not get(kms, "keyId"):
            yield (
                f"{short(resource)} does not encrypt etcd with a Key Vault key "
                "(securityProfile.azureKeyVaultKms.enabled and keyId)"
            )


_SECONDS = re.compile(r"^(\d+(?:\.\d+)?)s$")
_ISO_DURATION = re.compile(r"^P(?:(\d+)Y)?(?:(\d+)M)?(?:(\d+)W)?(?:(\d+)D)?$")


def _iso_days(duration: str) -> float | None:
    """Days in an ISO-8601 date duration (``P90D``, ``P1Y``); months count as 30 days."""
    match = _ISO_DURATION.match(duration)
    if not match or not any(match.groups()):
        return None
    years, months, weeks, days = (int(group or 0) for group in match.groups())
    return years * 365 + months * 30 + weeks * 7 + days


def kms_key_rotation(resource: Resource, context: Context) -> Iterator[str]:
    """Customer keys rotate automatically, at least every ``maxRotationDays``."""
    limit = float(context.option("maxRotationDays"))
    props = resource.props
    if resource.type == AWS_KMS_KEY:
        spec = props.get("customerMasterKeySpec") or props.get("keySpec") or "SYMMETRIC_DEFAULT"
        if spec != "SYMMETRIC_DEFAULT":
            return  # AWS rotates only symmetric keys; asymmetric keys are out of scope
        rotation = props.get("enableKeyRotation")
        if not is_true(rotation) and not is_unknown(rotation):
            yield f"{short(resource)} does not rotate (enableKeyRotation is not true)"
            return
        period = props.get("rotationPeriodInDays")
        if isinstance(period, int | float) and period > limit:
            yield f"{short(resource)} rotates every {period:.0f} days (more than {limit:.0f})"
    elif resource.type == GCP_CRYPTO_KEY:
        period = props.get("rotationPeriod")
        if is_unknown(period):
            return
        match = _SECONDS.match(period) if isinstance(period, str) else None
        if match is None:
            yield f"{short(resource)} does not rotate (rotationPeriod is not set)"
        elif float(match.group(1)) > limit * 86400:
            yield f"{short(resource)} rotates every {period} (more than {limit:.0f} days)"
    elif resource.type == AZURE_KEY:
        yield from _azure_key_rotation(resource, limit)


def _azure_key_rotation(resource: Resource, limit: float) -> Iterator[str]:
    actions = as_list(get(resource.props, "properties.rotationPolicy.lifetimeActions"))
    rotate = [
        action for action in actions if str(get(action, "action.type", "")).lower() == "rotate"
    ]
    if not rotate:
        yield f"{short(resource)} has no rotation policy with a Rotate action"
        return
    after = get(rotate[0], "trigger.timeAfterCreate")
    days = _iso_days(after) if isinstance(after, str) else None
    if days is not None and days > limit:
        yield f"{short(resource)} rotates {after} after creation (more than {limit:.0f} days)"


def key_vault_purge_protection(resource: Resource, context: Context) -> Iterator[str]:
    """A Key Vault holding the customer key cannot be purged while soft-deleted."""
    if resource.type != AZURE_VAULT:
        return
    purge = get(resource.props, "properties.enablePurgeProtection")
    if not is_true(purge) and not is_unknown(purge):
        yield (
            f"{short(resource)} has no purge protection (properties.enablePurgeProtection); "
            "a deleted key would make the archive unreadable for good"
        )


POLICIES: tuple[PolicySpec, ...] = (
    PolicySpec(
        name="bucket-customer-key",
        description="Every bucket is encrypted under a customer-managed KMS key.",
        domain="encryption",
        severity=Severity.CRITICAL,
        remediation=(
            "Encrypt the bucket with the stack's customer key: S3 SSE-KMS through "
            "aws.s3.BucketServerSideEncryptionConfiguration (kmsMasterKeyId = the key's ARN), "
            "GCS encryption.defaultKmsKeyName, or an Azure storage account with keySource "
            "Microsoft.Keyvault."
        ),
        validate_stack=bucket_customer_key,
        mirrors=("CKV_AWS_145", "CKV2_AZURE_1"),
    ),
    PolicySpec(
        name="cluster-secrets-encryption",
        description="Every cluster envelope-encrypts Kubernetes secrets with a customer key.",
        domain="encryption",
        severity=Severity.HIGH,
        remediation=(
            "Set EKS encryptionConfig {provider.keyArn, resources: [secrets]}, GKE "
            "databaseEncryption {state: ENCRYPTED, keyName} or AKS "
            "securityProfile.azureKeyVaultKms."
        ),
        validate_resource=cluster_secrets_encryption,
        mirrors=("CKV_AWS_58",),
    ),
    PolicySpec(
        name="kms-key-rotation",
        description="Every customer-managed key rotates automatically.",
        domain="encryption",
        severity=Severity.HIGH,
        remediation=(
            "Turn rotation on: aws.kms.Key enableKeyRotation, gcp.kms.CryptoKey "
            "rotationPeriod, or a Key Vault key rotationPolicy with a Rotate action."
        ),
        validate_resource=kms_key_rotation,
        options={
            "maxRotationDays": {
                "type": "integer",
                "minimum": 1,
                "default": 365,
                "description": "Longest allowed time between two rotations, in days.",
            }
        },
        mirrors=("CKV_AWS_7",),
    ),
    PolicySpec(
        name="key-vault-purge-protection",
        description="Key Vaults that hold customer keys have purge protection.",
        domain="encryption",
        severity=Severity.HIGH,
        remediation="Set properties.enablePurgeProtection: true on the Key Vault.",
        validate_resource=key_vault_purge_protection,
        mirrors=("CKV_AZURE_110",),
    ),
)
