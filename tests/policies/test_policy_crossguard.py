"""The CrossGuard side: pulumi_policy wrappers, and the pack served over the analyzer protocol.

The wrappers are called the way pulumi-policy's own tests call policies: hand-built
``ResourceValidationArgs`` / ``StackValidationArgs`` whose properties sit behind the
proxy that raises on preview-unknown values, and a ``report`` callable that collects.
The last tests start ``policies/`` exactly as the Pulumi CLI does (``python -m
pulumi.policy ENGINE policies``), talk to it with the engine's gRPC analyzer client, and
check the levels it announces and the diagnostics it returns for a prod and a dev stack.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pulumi_policy
import pytest
import yaml
from google.protobuf import empty_pb2, struct_pb2
from policytest_support import STACK
from pulumi.runtime.proto import analyzer_pb2, analyzer_pb2_grpc
from pulumi_policy.proxy import UNKNOWN_STRING_VALUE, unknown_checking_proxy

import policies
from policies.core import UNKNOWN
from policies.crossguard import StackSettings, build_policies, plain
from policies.registry import BY_NAME, POLICIES, PackConfig

PACK_DIR = Path(policies.__file__).resolve().parent
OPTS = pulumi_policy.PolicyResourceOptions(
    False, [], None, [], pulumi_policy.PolicyCustomTimeouts(0, 0, 0), []
)


def _settings(environment: str) -> StackSettings:
    return StackSettings(config={**STACK, "environment": environment}, stack=f"acme-{environment}")


def _policy(name: str, environment: str = "prod") -> Any:
    return next(policy for policy in build_policies(_settings(environment)) if policy.name == name)


def _collect() -> tuple[list[tuple[str, str | None]], Any]:
    reported: list[tuple[str, str | None]] = []

    def report(message: str, urn: str | None = None) -> None:
        reported.append((message, urn))

    return reported, report


def test_stack_settings_from_the_engine_environment() -> None:
    config = {
        "meterplane:environment": "staging",
        "meterplane:archive": json.dumps({"retentionDays": 90, "hotRetentionDays": 7}),
        "meterplane:zones": "3",
        "aws:region": "us-east-1",
    }
    settings = StackSettings.from_environment(
        {"PULUMI_CONFIG": json.dumps(config), "PULUMI_STACK": "acme-staging"}
    )
    assert settings.config == {
        "environment": "staging",
        "archive": {"retentionDays": 90, "hotRetentionDays": 7},
        "zones": 3,
    }
    assert settings.environment == "staging"
    assert StackSettings.from_environment({"PULUMI_STACK": "globex-dev"}).environment == "dev"
    assert StackSettings.from_environment({}).environment is None


@pytest.mark.parametrize(
    ("environment", "level"),
    [("prod", "mandatory"), ("staging", "advisory"), ("dev", "advisory"), (None, "mandatory")],
)
def test_levels_follow_the_stack_environment(environment: str | None, level: str) -> None:
    settings = StackSettings(config={"environment": environment} if environment else {})
    built = build_policies(settings)
    assert [policy.name for policy in built] == [spec.name for spec in POLICIES]
    assert {policy.enforcement_level.value for policy in built} == {level}


def test_policy_metadata_is_complete() -> None:
    for policy in build_policies(_settings("prod")):
        spec = BY_NAME[policy.name]
        assert isinstance(policy, pulumi_policy.StackValidationPolicy) == spec.is_stack_policy
        assert policy.severity is not None
        assert policy.remediation_steps
        if spec.options:
            assert policy.config_schema is not None
            assert set(policy.config_schema.properties) == set(spec.options)


def test_resource_policy_reports_through_crossguard_args() -> None:
    policy = _policy("kms-key-rotation")
    reported, report = _collect()
    args = pulumi_policy.ResourceValidationArgs(
        "aws:kms/key:Key",
        unknown_checking_proxy({"enableKeyRotation": False}),
        "urn:key",
        "key",
        OPTS,
        None,
        {"maxRotationDays": 90},
    )
    policy.validate(args, report)
    assert reported == [("Key key does not rotate (enableKeyRotation is not true)", "urn:key")]


def test_unknown_values_during_preview_are_not_violations() -> None:
    policy = _policy("kms-key-rotation")
    reported, report = _collect()
    args = pulumi_policy.ResourceValidationArgs(
        "aws:kms/key:Key",
        unknown_checking_proxy({"enableKeyRotation": UNKNOWN_STRING_VALUE}),
        "urn:key",
        "key",
        OPTS,
        None,
    )
    policy.validate(args, report)
    assert reported == []
    assert plain(
        unknown_checking_proxy({"a": [UNKNOWN_STRING_VALUE, "x"], "b": UNKNOWN_STRING_VALUE})
    ) == {"a": [UNKNOWN, "x"], "b": UNKNOWN}


def _policy_resource(
    kind: str, name: str, props: dict[str, Any], deps: dict[str, list[Any]] | None = None
) -> pulumi_policy.PolicyResource:
    return pulumi_policy.PolicyResource(
        kind, unknown_checking_proxy(props), f"urn:{name}", name, OPTS, None, None, [], deps or {}
    )


def test_stack_policy_joins_v7_bucket_resources_by_property_dependencies() -> None:
    bucket = _policy_resource("aws:s3/bucket:Bucket", "archive", {"bucket": UNKNOWN_STRING_VALUE})
    key = _policy_resource("aws:kms/key:Key", "key", {"enableKeyRotation": True})
    rule = {
        "applyServerSideEncryptionByDefault": {
            "sseAlgorithm": "aws:kms",
            "kmsMasterKeyId": UNKNOWN_STRING_VALUE,
        }
    }
    good = _policy_resource(
        "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration",
        "sse",
        {"bucket": UNKNOWN_STRING_VALUE, "rules": [rule]},
        {"bucket": [bucket], "rules": [key]},
    )
    policy = _policy("bucket-customer-key")
    reported, report = _collect()
    policy.validate(pulumi_policy.StackValidationArgs([bucket, key, good]), report)
    assert reported == []
    reported, report = _collect()
    policy.validate(pulumi_policy.StackValidationArgs([bucket, key]), report)
    assert reported == [
        (
            "Bucket archive has no server-side encryption configuration "
            "(no aws.s3.BucketServerSideEncryptionConfiguration joined to it)",
            "urn:archive",
        )
    ]


def test_pack_config_levels_for_tests_match_the_engine_shape() -> None:
    built = build_policies(
        _settings("prod"),
        PackConfig.parse({"all": "advisory", "image-pinned": {"enforcementLevel": "mandatory"}}),
    )
    levels = {policy.name: policy.enforcement_level.value for policy in built}
    assert levels["image-pinned"] == "mandatory"
    assert {level for name, level in levels.items() if name != "image-pinned"} == {"advisory"}


# --- the pack as the Pulumi CLI runs it ------------------------------------------------


@pytest.fixture
def pack(request: pytest.FixtureRequest) -> Iterator[analyzer_pb2_grpc.AnalyzerStub]:
    environment: str = request.param
    config = {
        "meterplane:environment": environment,
        "meterplane:customer": "acme",
        "meterplane:archive": json.dumps(STACK["archive"]),
    }
    env = {**os.environ, "PULUMI_CONFIG": json.dumps(config), "PULUMI_STACK": f"acme-{environment}"}
    # The engine address is unused by policy packs; pulumi.policy still requires one.
    process = subprocess.Popen(
        [sys.executable, "-u", "-m", "pulumi.policy", "127.0.0.1:1", str(PACK_DIR)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        text=True,
    )
    try:
        assert process.stdout is not None
        port = int(process.stdout.readline().strip())
        channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        grpc.channel_ready_future(channel).result(timeout=30)
        yield analyzer_pb2_grpc.AnalyzerStub(channel)
        channel.close()
    finally:
        process.terminate()
        process.wait(timeout=30)
        assert process.stdout is not None
        assert process.stderr is not None
        process.stdout.close()
        process.stderr.close()


def _struct(value: dict[str, Any]) -> struct_pb2.Struct:
    message = struct_pb2.Struct()
    message.update(value)
    return message


@pytest.mark.slow
@pytest.mark.parametrize(
    ("pack", "level"),
    [("prod", analyzer_pb2.MANDATORY), ("dev", analyzer_pb2.ADVISORY)],
    indirect=["pack"],
)
def test_served_pack_announces_levels_and_reports_violations(
    pack: analyzer_pb2_grpc.AnalyzerStub, level: int
) -> None:
    info = pack.GetAnalyzerInfo(empty_pb2.Empty())
    assert info.name == "meterplane"
    assert [policy.name for policy in info.policies] == [spec.name for spec in POLICIES]
    assert {policy.enforcementLevel for policy in info.policies} == {level}

    key = analyzer_pb2.AnalyzeRequest(
        type="aws:kms/key:Key",
        properties=_struct({"enableKeyRotation": False}),
        urn="urn:key",
        name="key",
    )
    diagnostics = [d for d in pack.Analyze(key).diagnostics if d.policyName == "kms-key-rotation"]
    assert [(d.urn, d.enforcementLevel) for d in diagnostics] == [("urn:key", level)]
    assert "does not rotate" in diagnostics[0].message

    bucket = analyzer_pb2.AnalyzerResource(
        type="aws:s3/bucket:Bucket",
        properties=_struct({"bucket": "b"}),
        urn="urn:bucket",
        name="bucket",
    )
    lifecycle = analyzer_pb2.AnalyzerResource(
        type="aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration",
        properties=_struct(
            {"bucket": "b", "rules": [{"id": "x", "status": "Enabled", "expiration": {"days": 30}}]}
        ),
        urn="urn:lifecycle",
        name="lifecycle",
    )
    stack = pack.AnalyzeStack(analyzer_pb2.AnalyzeStackRequest(resources=[bucket, lifecycle]))
    retention = [d for d in stack.diagnostics if d.policyName == "cold-tier-lifecycle"]
    assert len(retention) == 1
    assert (
        "expires objects after 30 day(s); the stack's archive.retentionDays is 730"
        in retention[0].message
    )
    assert (retention[0].urn, retention[0].enforcementLevel) == ("urn:bucket", level)


def test_policy_project_file_points_at_the_project_environment() -> None:
    project = yaml.safe_load((PACK_DIR / "PulumiPolicy.yaml").read_text())
    assert project["runtime"]["name"] == "python"
    virtualenv = (PACK_DIR / project["runtime"]["options"]["virtualenv"]).resolve()
    assert (
        Path(sys.executable).resolve().is_relative_to(virtualenv)
        or (virtualenv / "bin" / "python").exists()
    )
    assert (PACK_DIR / "__main__.py").is_file()
