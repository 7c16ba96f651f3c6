"""Hardening policies: non-root, read-only root filesystem, limits, pinned images."""

from __future__ import annotations

from typing import Any

import pytest
from policytest_support import assert_level_override, messages, res

from policies.hardening import image_problem

HARDENED = {
    "runAsNonRoot": True,
    "readOnlyRootFilesystem": True,
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
}
LIMITS = {"requests": {"cpu": "500m", "memory": "512Mi"}, "limits": {"memory": "512Mi"}}


def container(**overrides: Any) -> dict[str, Any]:
    return {
        "name": "app",
        "image": "ghcr.io/meterplane/app:0.1.0",
        "securityContext": dict(HARDENED),
        "resources": LIMITS,
        **overrides,
    }


def deployment(*containers: dict[str, Any], pod_security: dict[str, Any] | None = None) -> Any:
    pod: dict[str, Any] = {"containers": list(containers)}
    if pod_security is not None:
        pod["securityContext"] = pod_security
    return res("kubernetes:apps/v1:Deployment", "ingest", {"spec": {"template": {"spec": pod}}})


def cronjob(*containers: dict[str, Any]) -> Any:
    spec = {"jobTemplate": {"spec": {"template": {"spec": {"containers": list(containers)}}}}}
    return res("kubernetes:batch/v1:CronJob", "archiver", {"spec": spec})


GOOD = [deployment(container()), cronjob(container())]
POLICIES = ["non-root-containers", "read-only-root-filesystem", "resource-limits", "image-pinned"]


@pytest.mark.parametrize("policy", POLICIES)
def test_hardened_workloads_pass(policy: str) -> None:
    assert messages(policy, GOOD) == []


def test_root_and_privileged_containers_fail() -> None:
    root = container(
        securityContext={"runAsUser": 0.0, "allowPrivilegeEscalation": True, "privileged": True}
    )
    found = messages("non-root-containers", [cronjob(root)])
    assert found == [
        "CronJob archiver spec.jobTemplate.spec.template.spec container app runs as uid 0, "
        "allows privilege escalation, is privileged, does not drop ALL capabilities"
    ]


def test_missing_security_context_fails_and_pod_level_non_root_is_inherited() -> None:
    bare = {"name": "bare", "image": "x/y:1.0", "resources": LIMITS}
    found = messages("non-root-containers", [deployment(bare)])
    assert "may run as root" in found[0]
    inherited = container(
        securityContext={k: v for k, v in HARDENED.items() if k != "runAsNonRoot"}
    )
    assert (
        messages(
            "non-root-containers", [deployment(inherited, pod_security={"runAsNonRoot": True})]
        )
        == []
    )
    assert messages("read-only-root-filesystem", [deployment(bare)]) == [
        "Deployment ingest spec.template.spec container bare has a writable root filesystem"
    ]


def test_engine_pod_templates_are_checked() -> None:
    chi = res(
        "kubernetes:clickhouse.altinity.com/v1:ClickHouseInstallation",
        "chi",
        {
            "spec": {
                "templates": {
                    "podTemplates": [
                        {
                            "name": "replica-0",
                            "spec": {
                                "containers": [
                                    {
                                        "name": "clickhouse",
                                        "image": "clickhouse/clickhouse-server:latest",
                                        "resources": {"requests": {"cpu": "2"}},
                                    }
                                ]
                            },
                        }
                    ]
                }
            }
        },
    )
    assert messages("non-root-containers", [chi])[0].startswith(
        "ClickHouseInstallation chi podTemplate replica-0 container clickhouse may run as root"
    )
    assert messages("resource-limits", [chi]) == [
        "ClickHouseInstallation chi podTemplate replica-0 container clickhouse "
        "lacks limits.memory, requests.memory"
    ]
    assert messages("image-pinned", [chi]) == [
        "ClickHouseInstallation chi podTemplate replica-0 container clickhouse "
        "image clickhouse/clickhouse-server:latest is tagged latest"
    ]


def test_flink_deployment_image_and_resources() -> None:
    good = res(
        "kubernetes:flink.apache.org/v1beta1:FlinkDeployment",
        "flink",
        {
            "spec": {
                "image": "ghcr.io/meterplane/flink-job:0.1.0",
                "jobManager": {"resource": {"cpu": 1.0, "memory": "2048m"}},
                "taskManager": {"resource": {"cpu": 2.0, "memory": "8192m"}},
                "podTemplate": {
                    "spec": {
                        "containers": [
                            {"name": "flink-main-container", "securityContext": HARDENED}
                        ]
                    }
                },
            }
        },
    )
    assert messages("image-pinned", [good]) == []
    assert messages("resource-limits", [good]) == []
    bad = res(
        "kubernetes:flink.apache.org/v1beta1:FlinkDeployment",
        "flink",
        {"spec": {"image": "flink", "jobManager": {"resource": {"cpu": 1.0}}}},
    )
    assert messages("image-pinned", [bad]) == [
        "FlinkDeployment flink spec.image image flink has no tag (pulls latest)"
    ]
    assert messages("resource-limits", [bad]) == [
        "FlinkDeployment flink spec.jobManager.resource lacks memory",
        "FlinkDeployment flink spec.taskManager.resource lacks cpu, memory",
    ]


@pytest.mark.parametrize(
    ("image", "problem"),
    [
        ("ghcr.io/meterplane/app:0.1.0", None),
        ("localhost:5000/app:1.2", None),
        ("app@sha256:" + "a" * 64, None),
        ("app:latest", "is tagged latest"),
        ("localhost:5000/app", "has no tag"),
        ("app:stable", "is not a version"),
        (None, "names no image"),
    ],
)
def test_image_problems(image: Any, problem: str | None) -> None:
    found = image_problem(image)
    assert (found is None) if problem is None else (found is not None and problem in found)


def test_helm_charts_must_be_pinned() -> None:
    pinned = res(
        "kubernetes:helm.sh/v3:Release",
        "strimzi",
        {"chart": "strimzi-kafka-operator", "version": "0.49.0"},
    )
    floating = res(
        "kubernetes:helm.sh/v3:Release", "floating", {"chart": "flink-kubernetes-operator"}
    )
    assert messages("image-pinned", [pinned, floating]) == [
        "Release floating chart flink-kubernetes-operator has no pinned version"
    ]


def test_limits_options() -> None:
    assert messages("resource-limits", GOOD, {"requiredLimits": ["cpu", "memory"]}) == [
        "Deployment ingest spec.template.spec container app lacks limits.cpu",
        "CronJob archiver spec.jobTemplate.spec.template.spec container app lacks limits.cpu",
    ]


@pytest.mark.parametrize("policy", POLICIES)
def test_hardening_level_override(policy: str) -> None:
    bare = {"name": "bare", "image": "x/y:latest"}
    assert_level_override(policy, [deployment(bare)])


def test_explicitly_writable_root_filesystem_fails() -> None:
    writable = container(securityContext={**HARDENED, "readOnlyRootFilesystem": False})
    assert messages("read-only-root-filesystem", [cronjob(writable)]) == [
        "CronJob archiver spec.jobTemplate.spec.template.spec container app "
        "has a writable root filesystem"
    ]
