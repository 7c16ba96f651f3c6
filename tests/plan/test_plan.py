"""``render_stack`` and ``meterplane plan``: the offline renderer in its own process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from meterplane.commands import plan as plan_command
from meterplane.plan import PlanError, RenderedStack, list_stacks, render_stack
from tests.infra.harness import REPO, rendered

PLAN_BUDGET_S = 10.0


@pytest.fixture(scope="module")
def acme_dev() -> RenderedStack:
    return render_stack("acme-dev")


def test_list_stacks_finds_every_stack_file() -> None:
    stacks = list_stacks()
    assert stacks == sorted(
        p.name[len("Pulumi.") : -len(".yaml")] for p in (REPO / "stacks").glob("Pulumi.*.yaml")
    )
    assert {"acme-prod", "acme-dev", "globex-prod", "initech-prod"} <= set(stacks)


def test_render_stack_returns_the_contract(acme_dev: RenderedStack) -> None:
    assert acme_dev.stack == "acme-dev"
    assert acme_dev.config["cloud"] == "aws"
    assert acme_dev.config["archive"] == {"hotRetentionDays": 7, "retentionDays": 30}
    document = acme_dev.to_json()
    assert set(document) == {"stack", "resources"}
    urns = {r.urn for r in acme_dev.resources}
    for resource in document["resources"]:
        assert set(resource) == {"urn", "type", "name", "id", "parent", "inputs"}
        assert resource["parent"] is None or resource["parent"] in urns
    # Custom resources carry the fake id other resources' inputs refer to.
    key = acme_dev.of_type("aws:kms/key:Key")[0]
    sse = acme_dev.of_type(
        "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration"
    )[0]
    sse_key = sse.inputs["rules"][0]["applyServerSideEncryptionByDefault"]["kmsMasterKeyId"]
    assert key.id
    assert key.id in sse_key
    bucket = acme_dev.of_type("aws:s3/bucket:Bucket")[0]
    assert acme_dev.by_id(sse.inputs["bucket"]) == [bucket]
    # Components have no physical id; numbers arrive as the engine's floats.
    assert all(r.id is None for r in acme_dev.resources if r.type.startswith("meterplane:"))
    lifecycle = acme_dev.of_type(
        "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration"
    )[0]
    assert lifecycle.inputs["rules"][0]["expiration"]["days"] == 30.0
    # Secrets never appear in a plan.
    (provider,) = acme_dev.of_type("pulumi:providers:kubernetes")
    assert provider.inputs["kubeconfig"] == "[secret]"
    assert "certificate-authority-data" not in json.dumps(document)


def test_optional_parts_are_absent_from_the_dev_stack(acme_dev: RenderedStack) -> None:
    names = {r.inputs.get("metadata", {}).get("name") for r in acme_dev.resources}
    assert "entitlements" not in names
    assert "sync-customer-data" not in names
    assert "ingest" in names


def test_subprocess_render_equals_the_in_process_render(acme_dev: RenderedStack) -> None:
    # Fake ids and ARNs are derived from names, so renders are byte-identical wherever
    # they run: a reviewer's diff of two plans shows only real changes.
    in_process = rendered("acme-dev").view
    assert json.dumps(in_process.to_json(), sort_keys=True) == json.dumps(
        acme_dev.to_json(), sort_keys=True
    )
    assert in_process.config == acme_dev.config


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PULUMI_")}
    return subprocess.run(
        [sys.executable, "-m", "meterplane", "plan", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )


def test_tree_shows_components_and_their_children(capsys: pytest.CaptureFixture[str]) -> None:
    view = rendered("acme-dev").view
    plan_command._print_tree(view)
    out = capsys.readouterr().out
    assert out.splitlines()[0].startswith("acme-dev  cloud=aws region=us-west-2 zones=1")
    assert f"{len(view.resources)} resources" in out
    for needle in (
        "meterplane:aws:ArchiveBucket",
        "aws:s3/bucket:Bucket",
        "kubernetes:kafka.strimzi.io/v1:Kafka",
    ):
        assert needle in out
    # Children are indented under their component.
    lines = out.splitlines()
    bucket_line = next(i for i, line in enumerate(lines) if "meterplane:aws:ArchiveBucket" in line)
    assert lines[bucket_line + 1].startswith("│   ├── acme-dev-archive-")


def test_cli_prints_json_offline() -> None:
    started = time.perf_counter()
    done = _cli("globex-prod", "--json")
    elapsed = time.perf_counter() - started
    assert done.returncode == 0, done.stderr
    document = json.loads(done.stdout)
    assert document["stack"] == "globex-prod"
    types = {r["type"] for r in document["resources"]}
    assert "gcp:container/cluster:Cluster" in types
    assert "kubernetes:flink.apache.org/v1beta1:FlinkDeployment" in types
    assert elapsed < 3 * PLAN_BUDGET_S  # generous: shared CI cores; bench/plan.py measures


def test_cli_names_the_bad_key_of_an_invalid_stack(tmp_path: Path) -> None:
    document = yaml.safe_load((REPO / "stacks" / "Pulumi.acme-dev.yaml").read_text())
    document["config"]["meterplane:zones"] = 0
    (tmp_path / "Pulumi.bad-dev.yaml").write_text(yaml.safe_dump(document))
    done = _cli("bad-dev", "--stacks-dir", str(tmp_path))
    assert done.returncode == 1
    assert done.stdout == ""
    (line,) = done.stderr.strip().splitlines()
    assert "meterplane:zones" in line
    assert "greater than or equal to 1" in line
    with pytest.raises(PlanError, match="meterplane:zones"):
        render_stack("bad-dev", tmp_path)


def test_unknown_stack_is_a_plan_error(tmp_path: Path) -> None:
    with pytest.raises(PlanError, match="no file"):
        render_stack("nobody-prod", tmp_path)


def test_mocks_fill_computed_outputs_with_realistic_values() -> None:
    view = rendered("acme-prod").view
    text = json.dumps(view.to_json())
    # Nothing the engine would leave unknown in a preview reaches the plan.
    assert "04da6b54-80e4-46f7-96ec-b56ff0331ba9" not in text
    vpc = view.of_type("aws:ec2/vpc:Vpc")[0]
    assert vpc.id is not None
    assert vpc.id.startswith("vpc-0")
    subnets = view.of_type("aws:ec2/subnet:Subnet")
    assert {s.inputs["vpcId"] for s in subnets} == {vpc.id}
    role_arns = {
        r.inputs["roleArn"]
        for r in view.of_type("aws:eks/podIdentityAssociation:PodIdentityAssociation")
    }
    assert all(arn.startswith("arn:aws:iam::123456789012:role/") for arn in role_arns)
    cluster = view.of_type("aws:eks/cluster:Cluster")[0]
    assert cluster.inputs["encryptionConfig"]["provider"]["keyArn"].startswith(
        "arn:aws:kms:us-east-1:"
    )
    groups = view.of_type("aws:eks/nodeGroup:NodeGroup")
    assert {g.inputs["clusterName"] for g in groups} == {cluster.id}
    azure = rendered("initech-prod").view
    credential = azure.of_type("azure-native:managedidentity:FederatedIdentityCredential")[0]
    assert credential.inputs["issuer"].startswith("https://westeurope.oic.prod-aks.azure.com/")
    gcp = rendered("globex-prod").view
    pool = gcp.of_type("gcp:container/nodePool:NodePool")[0]
    assert pool.inputs["cluster"].startswith(
        "projects/globex-metering-prod/locations/europe-west1/clusters/"
    )


@pytest.mark.parametrize("stack", ["acme-prod", "globex-prod", "initech-prod", "acme-dev"])
def test_every_custom_resource_gets_a_cloud_shaped_id(stack: str) -> None:
    view = rendered(stack).view
    for resource in view.resources:
        if resource.type.startswith("meterplane:"):
            continue
        assert resource.id, resource.urn
        assert "Unknown" not in resource.id, resource.urn
        if resource.type.startswith("azure-native:"):
            assert resource.id.startswith("/subscriptions/"), resource.id
        if resource.type.startswith("gcp:"):
            assert resource.id.startswith("projects/") or resource.type.endswith(":Bucket"), (
                resource.id
            )
