"""AWS stack (acme-prod) under Pulumi mocks: zones, key, cluster encryption, bucket, identities."""

from __future__ import annotations

from typing import Any

import pulumi
import pytest

from tests.infra.harness import STACKS, Rendered, check, of_type, one, policy_document, rendered


@pytest.fixture(scope="module")
def aws() -> Rendered:
    return rendered(STACKS["aws"])


@pulumi.runtime.test
def test_prod_node_groups_span_three_zones(aws: Rendered) -> Any:
    view = aws.view
    subnets = {r.id: r.inputs["availabilityZone"] for r in of_type(view, "aws:ec2/subnet:Subnet")}

    def verify(_: list[Any]) -> None:
        groups = of_type(view, "aws:eks/nodeGroup:NodeGroup")
        zones = {subnets[s] for g in groups for s in g.inputs["subnetIds"]}
        assert len(zones) >= 3, zones
        # One group per zone: a zonal EBS volume always has a group that can add a node.
        assert all(len(g.inputs["subnetIds"]) == 1 for g in groups)
        cluster = one(view, "aws:eks/cluster:Cluster")
        assert {subnets[s] for s in cluster.inputs["vpcConfig"]["subnetIds"]} == zones
        assert cluster.inputs["vpcConfig"]["endpointPublicAccess"] is False
        assert cluster.inputs["vpcConfig"]["endpointPrivateAccess"] is True
        # One NAT gateway per zone.
        assert len(of_type(view, "aws:ec2/natGateway:NatGateway")) == len(zones)

    return check(aws.program.foundation.cluster.name).apply(verify)


@pulumi.runtime.test
def test_key_rotates_and_encrypts_cluster_secrets(aws: Rendered) -> Any:
    view = aws.view

    def verify(args: list[Any]) -> None:
        key_arn, encryption = args
        key = one(view, "aws:kms/key:Key")
        assert key.inputs["enableKeyRotation"] is True
        assert key_arn.endswith(f":key/{key.id}")
        cluster = one(view, "aws:eks/cluster:Cluster")
        assert cluster.inputs["encryptionConfig"] == {
            "provider": {"keyArn": key_arn},
            "resources": ["secrets"],
        }
        # The cluster's own output agrees with what the engine received.
        assert encryption == {"provider": {"key_arn": key_arn}, "resources": ["secrets"]}

    foundation = aws.program.foundation
    return check(foundation.key.arn, foundation.cluster.cluster.encryption_config).apply(verify)


@pulumi.runtime.test
def test_bucket_encrypted_private_versioned_and_expiring(aws: Rendered) -> Any:
    view = aws.view
    retention = aws.program.config.archive.retention_days

    def joined(type_token: str, bucket_id: str) -> dict[str, Any]:
        matches = [r for r in of_type(view, type_token) if r.inputs["bucket"] == bucket_id]
        assert len(matches) == 1, (type_token, bucket_id)
        return matches[0].inputs

    def verify(args: list[Any]) -> None:
        bucket_id, key_arn = args
        sse = joined(
            "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration",
            bucket_id,
        )
        (rule,) = sse["rules"]
        assert rule["applyServerSideEncryptionByDefault"] == {
            "sseAlgorithm": "aws:kms",
            "kmsMasterKeyId": key_arn,
        }
        assert rule["bucketKeyEnabled"] is True
        block = joined("aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock", bucket_id)
        for flag in (
            "blockPublicAcls",
            "blockPublicPolicy",
            "ignorePublicAcls",
            "restrictPublicBuckets",
        ):
            assert block[flag] is True, flag
        versioning = joined("aws:s3/bucketVersioning:BucketVersioning", bucket_id)
        assert versioning["versioningConfiguration"]["status"] == "Enabled"
        lifecycle = joined(
            "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration", bucket_id
        )
        expiring = [r for r in lifecycle["rules"] if r["status"] == "Enabled" and "expiration" in r]
        assert [r["expiration"]["days"] for r in expiring] == [float(retention)]
        policy = policy_document(joined("aws:s3/bucketPolicy:BucketPolicy", bucket_id)["policy"])
        tls = [s for s in policy["Statement"] if s["Sid"] == "DenyInsecureTransport"]
        assert tls[0]["Effect"] == "Deny"
        assert tls[0]["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}

    foundation = aws.program.foundation
    return check(foundation.bucket.bucket.id, foundation.key.arn).apply(verify)


@pulumi.runtime.test
def test_workload_identities_reach_only_the_bucket(aws: Rendered) -> Any:
    view = aws.view
    foundation = aws.program.foundation

    def verify(args: list[Any]) -> None:
        bucket_arn, key_arn, cluster_name, *role_arns = args
        allowed = {bucket_arn, f"{bucket_arn}/*", key_arn}
        roles = {r.id: r for r in of_type(view, "aws:iam/role:Role")}
        role_names = {arn.rsplit("/", 1)[1] for arn in role_arns}
        assert len(role_names) == 2
        for role_name in role_names:
            assert role_name in roles
            policies = [
                p
                for p in of_type(view, "aws:iam/rolePolicy:RolePolicy")
                if p.inputs["role"] == role_name
            ]
            attachments = [
                a
                for a in view.of_type("aws:iam/rolePolicyAttachment:RolePolicyAttachment")
                if a.inputs["role"] == role_name
            ]
            assert len(policies) == 1
            assert attachments == []  # no managed policy widens the grant
            for statement in policy_document(policies[0].inputs["policy"])["Statement"]:
                assert statement["Effect"] == "Allow"
                assert set(statement["Resource"]) <= allowed, statement
                assert not any(a == "*" or a.endswith(":*") for a in statement["Action"]), statement
        associations = of_type(view, "aws:eks/podIdentityAssociation:PodIdentityAssociation")
        bound = {
            (a.inputs["namespace"], a.inputs["serviceAccount"], a.inputs["roleArn"])
            for a in associations
        }
        assert {(ns, sa) for ns, sa, _ in bound} == {
            ("metering", "archiver"),
            ("metering", "flink"),
        }
        assert {arn for _, _, arn in bound} == set(role_arns)
        assert all(a.inputs["clusterName"] == cluster_name for a in associations)

    return check(
        foundation.bucket.arn,
        foundation.key.arn,
        foundation.cluster.name,
        *[identity.role_arn for identity in foundation.identities.values()],
    ).apply(verify)


@pulumi.runtime.test
def test_storage_class_uses_the_key_and_expands(aws: Rendered) -> Any:
    view = aws.view

    def verify(args: list[Any]) -> None:
        (key_arn,) = args
        (storage_class,) = [
            r for r in view.resources if r.type == "kubernetes:storage.k8s.io/v1:StorageClass"
        ]
        assert storage_class.inputs["provisioner"] == "ebs.csi.aws.com"
        assert storage_class.inputs["parameters"]["kmsKeyId"] == key_arn
        assert storage_class.inputs["parameters"]["encrypted"] == "true"
        assert storage_class.inputs["allowVolumeExpansion"] is True
        assert storage_class.inputs["volumeBindingMode"] == "WaitForFirstConsumer"

    return check(aws.program.foundation.key.arn).apply(verify)


@pulumi.runtime.test
def test_node_groups_sized_from_throughput(aws: Rendered) -> Any:
    view, program = aws.view, aws.program

    def verify(_: list[Any]) -> None:
        expected = program.sizing.nodes_per_zone(
            3, 8, entitlements=program.config.features.entitlements, prod=True
        )
        for group in of_type(view, "aws:eks/nodeGroup:NodeGroup"):
            scaling = group.inputs["scalingConfig"]
            assert scaling["desiredSize"] == scaling["minSize"] == float(expected)
            assert scaling["maxSize"] == float(3 * expected)
            assert group.inputs["instanceTypes"] == ["m7i.2xlarge"]

    return check(program.foundation.cluster.name).apply(verify)
