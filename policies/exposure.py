"""No public exposure: private buckets, private cluster endpoints, no public load balancers,
no ClickHouse user open without a password or with one written into the manifest.

The data plane answers only inside the customer's network; nothing in it is meant to be
reachable from the internet. The S3 public-access block is a separate pulumi-aws v7
resource, so the bucket check joins it to its bucket.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence

from policies.core import (
    Context,
    PolicySpec,
    Resource,
    Severity,
    Violation,
    as_list,
    as_mapping,
    get,
    is_true,
    is_unknown,
    of_type,
    refers_to,
    short,
)
from policies.encryption import (
    AKS_CLUSTER,
    AWS_BUCKET,
    AZURE_STORAGE_ACCOUNT,
    EKS_CLUSTER,
    GCP_BUCKET,
    GKE_CLUSTER,
)
from policies.redundancy import CLICKHOUSE

AWS_PUBLIC_ACCESS_BLOCK = "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock"
AWS_LOAD_BALANCER = "aws:lb/loadBalancer:LoadBalancer"
K8S_SERVICE = "kubernetes:core/v1:Service"

_BLOCK_FLAGS = ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets")

# Annotations that make a Service of type LoadBalancer internal, per cloud controller.
_INTERNAL_ANNOTATIONS = {
    "service.beta.kubernetes.io/aws-load-balancer-internal": "true",
    "service.beta.kubernetes.io/aws-load-balancer-scheme": "internal",
    "networking.gke.io/load-balancer-type": "internal",
    "cloud.google.com/load-balancer-type": "internal",
    "service.beta.kubernetes.io/azure-load-balancer-internal": "true",
}

_OPEN_CIDRS = frozenset({"0.0.0.0/0", "::/0", "*", "Internet"})


def _aws_bucket(bucket: Resource, resources: Sequence[Resource]) -> Iterator[str]:
    names = [bucket.props.get("bucket"), bucket.id]
    blocks = [
        block
        for block in of_type(resources, AWS_PUBLIC_ACCESS_BLOCK)
        if refers_to(block, "bucket", block.props.get("bucket"), bucket, names)
    ]
    if not blocks:
        yield f"{short(bucket)} has no aws.s3.BucketPublicAccessBlock"
        return
    for block in blocks:
        missing = [
            flag
            for flag in _BLOCK_FLAGS
            if not is_true(block.props.get(flag)) and not is_unknown(block.props.get(flag))
        ]
        if missing:
            yield f"{short(bucket)} public access block leaves {', '.join(missing)} off"


def _gcp_bucket(bucket: Resource) -> Iterator[str]:
    prevention = bucket.props.get("publicAccessPrevention")
    if prevention != "enforced" and not is_unknown(prevention):
        yield (
            f"{short(bucket)} does not enforce public access prevention "
            f"(publicAccessPrevention is {prevention or 'not set'})"
        )
    uniform = bucket.props.get("uniformBucketLevelAccess")
    if not is_true(uniform) and not is_unknown(uniform):
        yield f"{short(bucket)} allows object ACLs (uniformBucketLevelAccess is not true)"


def _azure_account(account: Resource) -> Iterator[str]:
    public = account.props.get("allowBlobPublicAccess")
    if public is not False and not is_unknown(public):
        yield (
            f"{short(account)} does not forbid public blob access "
            "(allowBlobPublicAccess must be false)"
        )


def bucket_public_access_blocked(
    resources: Sequence[Resource], context: Context
) -> Iterator[Violation]:
    """Every bucket refuses public access."""
    for bucket in of_type(resources, AWS_BUCKET):
        for message in _aws_bucket(bucket, resources):
            yield Violation(message, bucket.urn)
    for bucket in of_type(resources, GCP_BUCKET):
        for message in _gcp_bucket(bucket):
            yield Violation(message, bucket.urn)
    for account in of_type(resources, AZURE_STORAGE_ACCOUNT):
        for message in _azure_account(account):
            yield Violation(message, account.urn)


def _restricted(cidrs: list[object]) -> bool:
    """A non-empty allow-list with no catch-all entry."""
    return bool(cidrs) and not any(cidr in _OPEN_CIDRS for cidr in cidrs)


def private_cluster_endpoint(resource: Resource, context: Context) -> Iterator[str]:
    """The Kubernetes API endpoint of every cluster is private."""
    allow_listed = bool(context.option("allowAuthorizedNetworks"))
    props = resource.props
    if resource.type == EKS_CLUSTER:
        public = get(props, "vpcConfig.endpointPublicAccess")
        private = get(props, "vpcConfig.endpointPrivateAccess")
        cidrs = as_list(get(props, "vpcConfig.publicAccessCidrs"))
        # The provider's default for endpointPublicAccess is true: absent means public.
        publicly_open = public is not False and not is_unknown(public)
        if publicly_open and not (allow_listed and _restricted(cidrs)):
            yield f"{short(resource)} API endpoint is public (vpcConfig.endpointPublicAccess)"
        if not is_true(private) and not is_unknown(private):
            yield f"{short(resource)} has no private API endpoint (endpointPrivateAccess)"
    elif resource.type == GKE_CLUSTER:
        config = as_mapping(props.get("privateClusterConfig"))
        if not is_true(config.get("enablePrivateNodes")):
            yield f"{short(resource)} nodes have public IPs (enablePrivateNodes is not true)"
        if not is_true(config.get("enablePrivateEndpoint")):
            networks = [
                block.get("cidrBlock")
                for block in as_list(get(props, "masterAuthorizedNetworksConfig.cidrBlocks"))
                if isinstance(block, dict)
            ]
            if not (allow_listed and _restricted(networks)):
                yield f"{short(resource)} API endpoint is public (enablePrivateEndpoint)"
    elif resource.type == AKS_CLUSTER:
        private = get(props, "apiServerAccessProfile.enablePrivateCluster")
        ranges = as_list(get(props, "apiServerAccessProfile.authorizedIPRanges"))
        publicly_open = not is_true(private) and not is_unknown(private)
        if publicly_open and not (allow_listed and _restricted(ranges)):
            yield f"{short(resource)} API server is public (enablePrivateCluster)"


def _is_internal(annotations: dict[str, object]) -> bool:
    return any(
        str(annotations.get(key, "")).lower() == value
        for key, value in _INTERNAL_ANNOTATIONS.items()
    )


def no_public_load_balancer(resource: Resource, context: Context) -> Iterator[str]:
    """No data-plane Service or load balancer faces the internet."""
    if resource.type == K8S_SERVICE:
        if get(resource.props, "spec.type") != "LoadBalancer":
            return
        annotations = dict(as_mapping(get(resource.props, "metadata.annotations")))
        if not _is_internal(annotations):
            yield (
                f"{short(resource)} is a public LoadBalancer; annotate it internal "
                "(e.g. service.beta.kubernetes.io/aws-load-balancer-scheme: internal)"
            )
    elif resource.type == AWS_LOAD_BALANCER:
        internal = resource.props.get("internal")
        if not is_true(internal) and not is_unknown(internal):
            yield f"{short(resource)} is internet-facing (internal is not true)"


# What a ClickHouse user's password can be given as (users.xml), and the older prefix
# under which the operator reads one from a Secret.
_PASSWORD_SETTINGS = ("password", "password_sha256_hex", "password_double_sha1_hex")
_SECRET_PREFIX = "k8s_secret_"  # noqa: S105 a settings prefix, not a password


def _user_settings(users: Mapping[str, object]) -> dict[str, dict[str, object]]:
    """``configuration.users`` per user, whether written flat (``alice/password``) or nested
    (``alice: {password: ...}``); a ``valueFrom`` mapping is a value, not a level."""
    flat: dict[str, object] = {}

    def walk(tree: Mapping[str, object], prefix: str) -> None:
        for key, value in tree.items():
            if isinstance(value, Mapping) and "valueFrom" not in value:
                walk(value, f"{prefix}{key}/")
            else:
                flat[f"{prefix}{key}"] = value

    walk(users, "")
    out: dict[str, dict[str, object]] = {}
    for key, value in flat.items():
        user, _, setting = key.partition("/")
        out.setdefault(user, {})[setting] = value
    return out


def clickhouse_users_authenticated(resource: Resource, context: Context) -> Iterator[str]:
    """Every ClickHouse user that accepts connections from anywhere has a password, and no
    password (or hash of one) is written into the installation itself."""
    if resource.type != CLICKHOUSE:
        return
    users = as_mapping(get(resource.props, "spec.configuration.users"))
    for user, settings in sorted(_user_settings(users).items()):
        passwords = [s for s in settings if s in _PASSWORD_SETTINGS or s.startswith(_SECRET_PREFIX)]
        for setting in passwords:
            value = settings[setting]
            if setting.startswith(_SECRET_PREFIX) or is_unknown(value):
                continue
            if not get(value, "valueFrom.secretKeyRef"):
                yield (
                    f"{short(resource)}: user {user}'s {setting} is written in the manifest; "
                    "reference a Secret (valueFrom.secretKeyRef)"
                )
        anywhere = any(str(ip) in _OPEN_CIDRS for ip in as_list(settings.get("networks/ip")))
        if anywhere and not passwords:
            yield (
                f"{short(resource)}: user {user} accepts connections from any address "
                "with no password"
            )


POLICIES: tuple[PolicySpec, ...] = (
    PolicySpec(
        name="bucket-public-access-blocked",
        description="Every bucket blocks public access.",
        domain="exposure",
        severity=Severity.CRITICAL,
        remediation=(
            "Join an aws.s3.BucketPublicAccessBlock with all four flags true; on GCS set "
            "publicAccessPrevention: enforced and uniformBucketLevelAccess; on Azure set "
            "allowBlobPublicAccess: false."
        ),
        validate_stack=bucket_public_access_blocked,
        mirrors=("CKV2_AWS_6", "CKV_GCP_114", "CKV_GCP_29"),
    ),
    PolicySpec(
        name="private-cluster-endpoint",
        description="Every cluster's API endpoint and nodes are private.",
        domain="exposure",
        severity=Severity.HIGH,
        remediation=(
            "EKS vpcConfig {endpointPublicAccess: false, endpointPrivateAccess: true}; GKE "
            "privateClusterConfig {enablePrivateNodes, enablePrivateEndpoint}; AKS "
            "apiServerAccessProfile.enablePrivateCluster."
        ),
        validate_resource=private_cluster_endpoint,
        options={
            "allowAuthorizedNetworks": {
                "type": "boolean",
                "default": False,
                "description": (
                    "Accept a public endpoint restricted to an allow-list of networks "
                    "(no 0.0.0.0/0) instead of a private one."
                ),
            }
        },
        mirrors=("CKV_AWS_39",),
    ),
    PolicySpec(
        name="no-public-load-balancer",
        description="No data-plane service is exposed through a public load balancer.",
        domain="exposure",
        severity=Severity.HIGH,
        remediation=(
            "Use ClusterIP, or annotate the LoadBalancer Service as internal for the cloud "
            "(aws-load-balancer-scheme: internal, networking.gke.io/load-balancer-type: "
            "Internal, azure-load-balancer-internal: true)."
        ),
        validate_resource=no_public_load_balancer,
    ),
    PolicySpec(
        name="clickhouse-users-authenticated",
        description=(
            "ClickHouse users that accept connections from any address have passwords, "
            "and passwords come from Secrets, never the manifest."
        ),
        domain="exposure",
        severity=Severity.HIGH,
        remediation=(
            "Give the user <user>/password: {valueFrom: {secretKeyRef: {name, key}}} (or "
            "password_sha256_hex the same way) and keep the value in a Kubernetes Secret; "
            "or restrict <user>/networks/ip to the addresses that need it."
        ),
        validate_resource=clickhouse_users_authenticated,
    ),
)
