"""Exposure policies: bucket public access (v7 join), private endpoints, load balancers."""

from __future__ import annotations

from typing import Any

import pytest
from policytest_support import assert_level_override, messages, res

BUCKET = res(
    "aws:s3/bucket:Bucket", "archive", {"bucket": "acme-prod-archive"}, id="acme-prod-archive"
)
FLAGS = {
    "blockPublicAcls": True,
    "blockPublicPolicy": True,
    "ignorePublicAcls": True,
    "restrictPublicBuckets": True,
}


def block(**overrides: Any) -> Any:
    props = {"bucket": "acme-prod-archive", **FLAGS, **overrides}
    return res("aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock", "pab", props)


# --- bucket-public-access-blocked ------------------------------------------------------


def test_buckets_blocked_pass() -> None:
    gcs = res(
        "gcp:storage/bucket:Bucket",
        "g",
        {"publicAccessPrevention": "enforced", "uniformBucketLevelAccess": True},
    )
    azure = res("azure-native:storage:StorageAccount", "a", {"allowBlobPublicAccess": False})
    assert messages("bucket-public-access-blocked", [BUCKET, block(), gcs, azure]) == []


def test_public_access_flag_off_fails() -> None:
    found = messages("bucket-public-access-blocked", [BUCKET, block(restrictPublicBuckets=False)])
    assert found == ["Bucket archive public access block leaves restrictPublicBuckets off"]


def test_missing_block_and_missing_properties_fail() -> None:
    assert messages("bucket-public-access-blocked", [BUCKET]) == [
        "Bucket archive has no aws.s3.BucketPublicAccessBlock"
    ]
    gcs = res("gcp:storage/bucket:Bucket", "g", {})
    azure = res("azure-native:storage:StorageAccount", "a", {})
    found = messages("bucket-public-access-blocked", [gcs, azure])
    assert len(found) == 3
    assert "publicAccessPrevention is not set" in found[0]
    assert "uniformBucketLevelAccess" in found[1]
    assert "allowBlobPublicAccess must be false" in found[2]


def test_bucket_public_access_level_override() -> None:
    assert_level_override("bucket-public-access-blocked", [BUCKET])


# --- private-cluster-endpoint ----------------------------------------------------------

PRIVATE = [
    (
        "aws:eks/cluster:Cluster",
        {"vpcConfig": {"endpointPublicAccess": False, "endpointPrivateAccess": True}},
    ),
    (
        "gcp:container/cluster:Cluster",
        {"privateClusterConfig": {"enablePrivateNodes": True, "enablePrivateEndpoint": True}},
    ),
    (
        "azure-native:containerservice:ManagedCluster",
        {"apiServerAccessProfile": {"enablePrivateCluster": True}},
    ),
]


@pytest.mark.parametrize(("kind", "props"), PRIVATE)
def test_private_endpoints_pass(kind: str, props: dict[str, Any]) -> None:
    assert messages("private-cluster-endpoint", [res(kind, "c", props)]) == []


@pytest.mark.parametrize(
    ("kind", "props"),
    [
        (
            "aws:eks/cluster:Cluster",
            {"vpcConfig": {"endpointPublicAccess": True, "endpointPrivateAccess": True}},
        ),
        (
            "gcp:container/cluster:Cluster",
            {"privateClusterConfig": {"enablePrivateNodes": True, "enablePrivateEndpoint": False}},
        ),
        (
            "azure-native:containerservice:ManagedCluster",
            {"apiServerAccessProfile": {"enablePrivateCluster": False}},
        ),
    ],
)
def test_public_endpoints_fail(kind: str, props: dict[str, Any]) -> None:
    found = messages("private-cluster-endpoint", [res(kind, "c", props)])
    assert len(found) == 1
    assert "public" in found[0]


def test_eks_without_vpc_settings_is_public_by_provider_default() -> None:
    found = messages(
        "private-cluster-endpoint", [res("aws:eks/cluster:Cluster", "c", {"vpcConfig": {}})]
    )
    assert found == [
        "Cluster c API endpoint is public (vpcConfig.endpointPublicAccess)",
        "Cluster c has no private API endpoint (endpointPrivateAccess)",
    ]


def test_authorized_networks_option() -> None:
    restricted = res(
        "aws:eks/cluster:Cluster",
        "c",
        {
            "vpcConfig": {
                "endpointPublicAccess": True,
                "endpointPrivateAccess": True,
                "publicAccessCidrs": ["203.0.113.0/24"],
            }
        },
    )
    wide_open = res(
        "aws:eks/cluster:Cluster",
        "w",
        {
            "vpcConfig": {
                "endpointPublicAccess": True,
                "endpointPrivateAccess": True,
                "publicAccessCidrs": ["0.0.0.0/0"],
            }
        },
    )
    assert len(messages("private-cluster-endpoint", [restricted, wide_open])) == 2
    allowed = messages(
        "private-cluster-endpoint", [restricted, wide_open], {"allowAuthorizedNetworks": True}
    )
    assert allowed == ["Cluster w API endpoint is public (vpcConfig.endpointPublicAccess)"]
    assert_level_override("private-cluster-endpoint", [wide_open])


# --- no-public-load-balancer -----------------------------------------------------------


def service(kind: str | None, annotations: dict[str, str] | None = None) -> Any:
    spec = {} if kind is None else {"type": kind}
    return res(
        "kubernetes:core/v1:Service",
        f"svc-{kind}",
        {"metadata": {"annotations": annotations or {}}, "spec": spec},
    )


def test_cluster_ip_and_internal_load_balancers_pass() -> None:
    resources = [
        service("ClusterIP"),
        service(None),
        service(
            "LoadBalancer", {"service.beta.kubernetes.io/aws-load-balancer-scheme": "internal"}
        ),
        service("LoadBalancer", {"networking.gke.io/load-balancer-type": "Internal"}),
        res("aws:lb/loadBalancer:LoadBalancer", "lb", {"internal": True}),
    ]
    assert messages("no-public-load-balancer", resources) == []


def test_public_load_balancers_fail() -> None:
    resources = [service("LoadBalancer"), res("aws:lb/loadBalancer:LoadBalancer", "lb", {})]
    found = messages("no-public-load-balancer", resources)
    assert len(found) == 2
    assert found[0].startswith("Service svc-LoadBalancer is a public LoadBalancer")
    assert found[1] == "LoadBalancer lb is internet-facing (internal is not true)"
    assert_level_override("no-public-load-balancer", resources)


# --- clickhouse-users-authenticated ----------------------------------------------------


def installation(users: dict[str, Any]) -> Any:
    return res(
        "kubernetes:clickhouse.altinity.com/v1:ClickHouseInstallation",
        "chi",
        {"spec": {"configuration": {"users": users}}},
    )


SECRET_REF = {"valueFrom": {"secretKeyRef": {"name": "clickhouse-credentials", "key": "app"}}}


def test_users_with_secret_passwords_or_local_networks_pass() -> None:
    resources = [
        installation(
            {
                "app/password": SECRET_REF,
                "app/networks/ip": ["0.0.0.0/0", "::/0"],
                "reader": {"password_sha256_hex": SECRET_REF, "networks": {"ip": "::/0"}},
                "legacy/k8s_secret_password": "clickhouse-credentials/legacy",
                "legacy/networks/ip": "::/0",
                "local/networks/ip": ["127.0.0.1", "10.0.0.0/8"],  # no password, not open
            }
        ),
        installation({}),
    ]
    assert messages("clickhouse-users-authenticated", resources) == []


def test_plaintext_passwords_and_open_users_without_one_fail() -> None:
    resources = [
        installation(
            {
                "app/password": "hunter2",
                "app/networks/ip": "::/0",
                "ops": {"password_sha256_hex": "716b36073a90c6fe", "networks": {"ip": ["::/0"]}},
                "open/networks/ip": ["0.0.0.0/0"],
                "open/profile": "default",
            }
        )
    ]
    found = messages("clickhouse-users-authenticated", resources)
    assert found == [
        "ClickHouseInstallation chi: user app's password is written in the manifest; "
        "reference a Secret (valueFrom.secretKeyRef)",
        "ClickHouseInstallation chi: user open accepts connections from any address "
        "with no password",
        "ClickHouseInstallation chi: user ops's password_sha256_hex is written in the "
        "manifest; reference a Secret (valueFrom.secretKeyRef)",
    ]
    assert_level_override("clickhouse-users-authenticated", resources)
