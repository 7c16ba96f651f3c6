"""Adapters from the pure policies to ``pulumi_policy`` (CrossGuard) policy objects.

CrossGuard hands a policy ``ResourceValidationArgs`` / ``StackValidationArgs`` whose
properties sit behind a proxy that raises on values unknown during preview; this module
turns them into :class:`policies.core.Resource` (unknowns become :data:`UNKNOWN`) and
reports each violation with its resource's URN. Building the ``PolicyPack`` itself is left
to ``__main__.py`` because its constructor serves gRPC forever.

The level of every policy is decided when the pack starts, from the stack being previewed:
Pulumi hands a policy pack the stack's configuration (``PULUMI_CONFIG``) and name
(``PULUMI_STACK``), so a prod stack gets mandatory policies and dev/staging advisory ones.
``--policy-pack-config`` overrides are applied by the engine on top of that default.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pulumi_policy
from pulumi_policy.proxy import UnknownValueError, _is_unknown

from policies.core import UNKNOWN, Context, Level, PolicySpec, Resource, Severity
from policies.registry import POLICIES, PackConfig

CONFIG_PREFIX = "meterplane:"

_LEVELS = {
    Level.ADVISORY: pulumi_policy.EnforcementLevel.ADVISORY,
    Level.MANDATORY: pulumi_policy.EnforcementLevel.MANDATORY,
    Level.REMEDIATE: pulumi_policy.EnforcementLevel.REMEDIATE,
    Level.DISABLED: pulumi_policy.EnforcementLevel.DISABLED,
}
_SEVERITIES = {
    Severity.LOW: pulumi_policy.Severity.LOW,
    Severity.MEDIUM: pulumi_policy.Severity.MEDIUM,
    Severity.HIGH: pulumi_policy.Severity.HIGH,
    Severity.CRITICAL: pulumi_policy.Severity.CRITICAL,
}


@dataclass(frozen=True)
class StackSettings:
    """What the pack knows about the stack under preview."""

    config: Mapping[str, Any] = field(default_factory=dict)
    stack: str | None = None

    @property
    def environment(self) -> str | None:
        """``meterplane:environment``, else the stack name's last segment (``acme-prod``)."""
        environment = self.config.get("environment")
        if isinstance(environment, str):
            return environment
        if self.stack and "-" in self.stack:
            return self.stack.rsplit("-", 1)[1]
        return None

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> StackSettings:
        """Read ``PULUMI_CONFIG`` / ``PULUMI_STACK`` as Pulumi sets them for a policy pack."""
        env = os.environ if environ is None else environ
        try:
            raw = json.loads(env.get("PULUMI_CONFIG", "{}"))
        except json.JSONDecodeError:
            raw = {}
        config: dict[str, Any] = {}
        for key, value in raw.items() if isinstance(raw, dict) else ():
            if key.startswith(CONFIG_PREFIX):
                config[key[len(CONFIG_PREFIX) :]] = _decode(value)
        return cls(config=config, stack=env.get("PULUMI_STACK"))


def _decode(value: Any) -> Any:
    """Pulumi passes structured config values as JSON text; plain strings stay strings."""
    if (isinstance(value, str) and value[:1] in ("{", "[")) or value in ("true", "false"):
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    if isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            return value
    return value


def plain(value: Any) -> Any:
    """Copy CrossGuard's proxied properties into plain data; unknowns become UNKNOWN."""
    if isinstance(value, str):
        return UNKNOWN if _is_unknown(value) else value
    if isinstance(value, Mapping):
        result: dict[str, Any] = {}
        for key in value:
            try:
                result[str(key)] = plain(value[key])
            except UnknownValueError:
                result[str(key)] = UNKNOWN
        return result
    if isinstance(value, Sequence):
        items: list[Any] = []
        for index in range(len(value)):
            try:
                items.append(plain(value[index]))
            except UnknownValueError:
                items.append(UNKNOWN)
        return items
    return value


def resource_from_args(args: pulumi_policy.ResourceValidationArgs) -> Resource:
    """One resource under validation, as plain data."""
    return Resource(
        type=args.resource_type,
        name=args.name,
        urn=args.urn,
        props=plain(args.props),
        parent=args.opts.parent if args.opts is not None else None,
    )


def resources_from_args(args: pulumi_policy.StackValidationArgs) -> list[Resource]:
    """Every resource of the stack, with the property dependencies joins rely on."""
    return [
        Resource(
            type=item.resource_type,
            name=item.name,
            urn=item.urn,
            props=plain(item.props),
            parent=item.parent.urn if item.parent is not None else None,
            dependencies={
                prop: tuple(dependency.urn for dependency in dependencies)
                for prop, dependencies in item.property_dependencies.items()
            },
        )
        for item in args.resources
    ]


def build_policy(
    spec: PolicySpec, level: Level, settings: StackSettings
) -> pulumi_policy.ResourceValidationPolicy | pulumi_policy.StackValidationPolicy:
    """Wrap one pure policy for CrossGuard at ``level``."""
    schema = (
        pulumi_policy.PolicyConfigSchema(
            {key: dict(schema) for key, schema in spec.options.items()}
        )
        if spec.options
        else None
    )
    common: dict[str, Any] = {
        "name": spec.name,
        "description": spec.description,
        "enforcement_level": _LEVELS[level],
        "config_schema": schema,
        "severity": _SEVERITIES[spec.severity],
        "remediation_steps": spec.remediation,
        "tags": [spec.domain, *spec.mirrors],
    }
    if spec.validate_stack is not None:
        validate_stack = spec.validate_stack

        def validate_stack_args(
            args: pulumi_policy.StackValidationArgs, report: pulumi_policy.ReportViolation
        ) -> None:
            context = Context(settings.config, spec.resolve_options(args.get_config()))
            for violation in validate_stack(resources_from_args(args), context):
                report(violation.message, violation.urn)

        return pulumi_policy.StackValidationPolicy(validate=validate_stack_args, **common)

    validate_resource = spec.validate_resource
    assert validate_resource is not None  # PolicySpec guarantees one validator

    def validate_resource_args(
        args: pulumi_policy.ResourceValidationArgs, report: pulumi_policy.ReportViolation
    ) -> None:
        context = Context(settings.config, spec.resolve_options(args.get_config()))
        for message in validate_resource(resource_from_args(args), context):
            report(message, args.urn)

    return pulumi_policy.ResourceValidationPolicy(validate=validate_resource_args, **common)


def build_policies(
    settings: StackSettings, config: PackConfig | None = None
) -> list[pulumi_policy.ResourceValidationPolicy | pulumi_policy.StackValidationPolicy]:
    """Every policy of the pack at the level the stack's environment calls for.

    ``config`` is only for callers that run the policies without the engine (tests); under
    ``pulumi preview`` the engine applies ``--policy-pack-config`` itself.
    """
    config = config or PackConfig()
    return [
        build_policy(spec, config.level(spec, settings.environment), settings) for spec in POLICIES
    ]
