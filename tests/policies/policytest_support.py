"""Builders shared by the policy tests: hand-made resources in the engine's shape.

Each resource gets a URN of the form Pulumi writes and, like the offline renderer, a fake
physical id that other resources' inputs can refer to.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from policies.core import Context, Resource, Violation
from policies.registry import BY_NAME, PackConfig

STACK = {
    "customer": "acme",
    "environment": "prod",
    "cloud": "aws",
    "region": "us-east-1",
    "zones": 3,
    "archive": {"hotRetentionDays": 35, "retentionDays": 730},
    "controlPlane": {
        "endpoint": "https://sync.meterplane.example.com",
        "environmentId": "env-acme-prod",
        "egressCidrs": ["198.51.100.0/24"],
    },
}


def res(
    kind: str,
    name: str,
    props: Mapping[str, Any] | None = None,
    *,
    id: str | None = None,
    dependencies: Mapping[str, tuple[str, ...]] | None = None,
) -> Resource:
    """A resource of type ``kind``; its URN follows Pulumi's layout."""
    return Resource(
        type=kind,
        name=name,
        urn=f"urn:pulumi:acme-prod::meterplane::{kind}::{name}",
        props=dict(props or {}),
        id=id if id is not None else f"{name}-id",
        dependencies=dict(dependencies or {}),
    )


def context(policy: str, options: Mapping[str, Any] | None = None, stack: Any = None) -> Context:
    """The context a policy sees, with its options resolved over the defaults."""
    spec = BY_NAME[policy]
    return Context(STACK if stack is None else stack, spec.resolve_options(options))


def violations(
    policy: str,
    resources: Sequence[Resource],
    options: Mapping[str, Any] | None = None,
    stack: Any = None,
) -> list[Violation]:
    """Run one policy over ``resources``."""
    return BY_NAME[policy].evaluate(resources, context(policy, options, stack))


def messages(
    policy: str,
    resources: Sequence[Resource],
    options: Mapping[str, Any] | None = None,
    stack: Any = None,
) -> list[str]:
    """Only the messages of :func:`violations`."""
    return [violation.message for violation in violations(policy, resources, options, stack)]


def level(policy: str, raw_config: Mapping[str, Any] | None, environment: str) -> str:
    """The level ``policy`` runs at on an ``environment`` stack under ``raw_config``."""
    return PackConfig.parse(raw_config).level(BY_NAME[policy], environment).value


def assert_level_override(policy: str, failing: Sequence[Resource]) -> None:
    """Pack config moves ``policy`` off its environment default, both ways, and disables it."""
    from meterplane.policycheck.runner import check_resources  # noqa: PLC0415

    def found(raw: Mapping[str, Any] | None, environment: str) -> list[str]:
        stack = {**STACK, "environment": environment}
        result = check_resources("acme", failing, stack, PackConfig.parse(raw))
        return [finding.level.value for finding in result.findings_of(policy)]

    assert found(None, "prod")
    assert set(found(None, "prod")) == {"mandatory"}
    assert set(found(None, "dev")) == {"advisory"}
    assert set(found({policy: "advisory"}, "prod")) == {"advisory"}
    assert set(found({policy: {"enforcementLevel": "mandatory"}}, "dev")) == {"mandatory"}
    assert set(found({"all": "advisory", policy: "mandatory"}, "dev")) == {"mandatory"}
    assert found({policy: "disabled"}, "prod") == []
