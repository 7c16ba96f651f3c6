"""GCP stack (globex-prod) under Pulumi mocks: zones, key, cluster encryption, bucket, identity."""

from __future__ import annotations

from typing import Any

import pulumi
import pytest

from tests.infra.harness import STACKS, Rendered, check, of_type, one, rendered


@pytest.fixture(scope="module")
def gcp() -> Rendered:
    return rendered(STACKS["gcp"])


def _seconds(duration: str) -> int:
    assert duration.endswith("s"), duration
    return int(duration[:-1])


@pulumi.runtime.test
def test_prod_node_pool_spans_three_zones(gcp: Rendered) -> Any:
    view = gcp.view

    def verify(_: list[Any]) -> None:
        cluster = one(view, "gcp:container/cluster:Cluster")
        assert cluster.inputs["location"] == gcp.program.config.region  # regional control plane
        for pool in of_type(view, "gcp:container/nodePool:NodePool"):
            zones = pool.inputs["nodeLocations"]
            assert len(set(zones)) >= 3, zones
            assert all(z.startswith(gcp.program.config.region) for z in zones)
            assert pool.inputs["nodeConfig"]["workloadMetadataConfig"] == {"mode": "GKE_METADATA"}
        assert cluster.inputs["privateClusterConfig"]["enablePrivateNodes"] is True
        assert (
            cluster.inputs["workloadIdentityConfig"]["workloadPool"]
            == "globex-metering-prod.svc.id.goog"
        )

    return check(gcp.program.foundation.cluster.name).apply(verify)


@pulumi.runtime.test
def test_key_rotates_and_encrypts_cluster_secrets(gcp: Rendered) -> Any:
    view = gcp.view

    def verify(args: list[Any]) -> None:
        (key_id,) = args
        key = one(view, "gcp:kms/cryptoKey:CryptoKey")
        assert key.id == key_id
        assert 0 < _seconds(key.inputs["rotationPeriod"]) <= 90 * 86400
        cluster = one(view, "gcp:container/cluster:Cluster")
        assert cluster.inputs["databaseEncryption"] == {"state": "ENCRYPTED", "keyName": key_id}
        # GKE's and Cloud Storage's service agents may use this key (and only they are granted).
        grants = of_type(view, "gcp:kms/cryptoKeyIAMMember:CryptoKeyIAMMember")
        assert {g.inputs["cryptoKeyId"] for g in grants} == {key_id}
        members = {g.inputs["member"] for g in grants}
        assert any("container-engine-robot" in m for m in members)
        assert any("gs-project-accounts" in m for m in members)

    return check(gcp.program.foundation.key.key_id).apply(verify)


@pulumi.runtime.test
def test_bucket_cmek_private_and_expiring(gcp: Rendered) -> Any:
    view = gcp.view
    retention = gcp.program.config.archive.retention_days

    def verify(args: list[Any]) -> None:
        bucket_name, key_id = args
        bucket = one(view, "gcp:storage/bucket:Bucket")
        assert bucket.id == bucket_name
        assert bucket.inputs["encryption"] == {"defaultKmsKeyName": key_id}
        assert bucket.inputs["publicAccessPrevention"] == "enforced"
        assert bucket.inputs["uniformBucketLevelAccess"] is True
        assert bucket.inputs["versioning"] == {"enabled": True}
        ages = [
            rule["condition"]["age"]
            for rule in bucket.inputs["lifecycleRules"]
            if rule["action"]["type"] == "Delete" and "age" in rule["condition"]
        ]
        assert ages == [float(retention)]
        assert "retentionPolicy" not in bucket.inputs  # locks are irreversible

    foundation = gcp.program.foundation
    return check(foundation.bucket.name, foundation.key.key_id).apply(verify)


@pulumi.runtime.test
def test_workload_identities_reach_only_the_bucket(gcp: Rendered) -> Any:
    view = gcp.view
    foundation = gcp.program.foundation

    def verify(args: list[Any]) -> None:
        bucket_name, *emails = args
        assert len(emails) == 2
        for email in emails:
            member = f"serviceAccount:{email}"
            bucket_grants = [
                g
                for g in of_type(view, "gcp:storage/bucketIAMMember:BucketIAMMember")
                if g.inputs["member"] == member
            ]
            assert [(g.inputs["bucket"], g.inputs["role"]) for g in bucket_grants] == [
                (bucket_name, "roles/storage.objectAdmin")
            ]
            # No project-, key- or other-bucket-level grant names this account.
            elsewhere = [
                r
                for r in view.resources
                if r.inputs.get("member") == member
                and r.type != "gcp:storage/bucketIAMMember:BucketIAMMember"
            ]
            assert elsewhere == []
        impersonation = of_type(view, "gcp:serviceaccount/iAMMember:IAMMember")
        subjects = {(r.inputs["role"], r.inputs["member"]) for r in impersonation}
        assert subjects == {
            (
                "roles/iam.workloadIdentityUser",
                "serviceAccount:globex-metering-prod.svc.id.goog[metering/archiver]",
            ),
            (
                "roles/iam.workloadIdentityUser",
                "serviceAccount:globex-metering-prod.svc.id.goog[metering/flink]",
            ),
        }
        accounts = {
            r.inputs["metadata"]["name"]: r.inputs["metadata"].get("annotations", {})
            for r in view.resources
            if r.type == "kubernetes:core/v1:ServiceAccount"
            and r.inputs["metadata"]["name"] in {"archiver", "flink"}
        }
        assert {a["iam.gke.io/gcp-service-account"] for a in accounts.values()} == set(emails)

    return check(foundation.bucket.name, *[i.email for i in foundation.identities.values()]).apply(
        verify
    )
