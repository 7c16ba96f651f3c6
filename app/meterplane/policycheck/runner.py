"""Run the policy pack over offline-rendered stacks, without the Pulumi engine.

The stacks are rendered exactly as ``meterplane plan`` renders them
(:func:`meterplane.plan.render_stack`), turned into the policies' plain model, and every
policy of :mod:`policies.registry` runs over them at the level the stack's environment and
the pack configuration call for — the same functions and the same level rules that the
CrossGuard pack applies under ``pulumi preview --policy-pack policies``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from meterplane.plan import PlanError, RenderedResource, RenderedStack, list_stacks, render_stack
from meterplane.plan.stackfiles import meterplane_config, read_stack_file
from policies.core import Context, Level, PolicySpec, Resource, Severity
from policies.registry import POLICIES, PackConfig


@dataclass(frozen=True)
class Finding:
    """One violation, attributed to a policy, a level and a resource."""

    policy: str
    level: Level
    severity: Severity
    domain: str
    message: str
    urn: str | None
    resource_type: str | None
    resource_name: str | None

    @property
    def resource(self) -> str:
        """How a reviewer sees the resource: ``Type name`` or ``(stack)``."""
        if self.resource_type is None:
            return "(stack)"
        return f"{self.resource_type.rsplit(':', 1)[-1]} {self.resource_name}"


@dataclass(frozen=True)
class AppliedPolicy:
    """A policy and the level it ran at on one stack."""

    spec: PolicySpec
    level: Level


@dataclass(frozen=True)
class StackResult:
    """The outcome of checking one stack (``error``: it could not be rendered)."""

    stack: str
    environment: str | None
    policies: tuple[AppliedPolicy, ...] = ()
    findings: tuple[Finding, ...] = ()
    resources: int = 0
    error: str | None = None

    @property
    def mandatory(self) -> list[Finding]:
        """Violations that block the change."""
        return [finding for finding in self.findings if finding.level is Level.MANDATORY]

    @property
    def advisory(self) -> list[Finding]:
        """Violations reported for information."""
        return [finding for finding in self.findings if finding.level is Level.ADVISORY]

    @property
    def blocked(self) -> bool:
        """True when the stack must not be applied as it is."""
        return self.error is not None or bool(self.mandatory)

    def findings_of(self, policy: str) -> list[Finding]:
        """This stack's violations of one policy."""
        return [finding for finding in self.findings if finding.policy == policy]


def to_resources(rendered: RenderedStack) -> list[Resource]:
    """The rendering in the policies' model (inputs are what the engine would analyze)."""
    return [
        Resource(
            type=item.type,
            name=item.name,
            urn=item.urn,
            props=item.inputs,
            id=item.id,
            parent=item.parent,
        )
        for item in rendered.resources
    ]


def check_resources(
    stack: str,
    resources: Sequence[Resource],
    stack_config: dict[str, object],
    config: PackConfig,
) -> StackResult:
    """Run every enabled policy over one stack's resources."""
    environment = stack_config.get("environment")
    environment = environment if isinstance(environment, str) else None
    by_urn = {resource.urn: resource for resource in resources}
    applied: list[AppliedPolicy] = []
    findings: list[Finding] = []
    for spec in POLICIES:
        level = config.level(spec, environment)
        applied.append(AppliedPolicy(spec, level))
        if level is Level.DISABLED:
            continue
        context = Context(stack_config, config.options_for(spec))
        for violation in spec.evaluate(resources, context):
            owner = by_urn.get(violation.urn) if violation.urn else None
            findings.append(
                Finding(
                    policy=spec.name,
                    level=level,
                    severity=spec.severity,
                    domain=spec.domain,
                    message=violation.message,
                    urn=violation.urn,
                    resource_type=owner.type if owner else None,
                    resource_name=owner.name if owner else None,
                )
            )
    return StackResult(
        stack=stack,
        environment=environment,
        policies=tuple(applied),
        findings=tuple(findings),
        resources=len(resources),
    )


def check_rendered(rendered: RenderedStack, config: PackConfig) -> StackResult:
    """Run the pack over one rendered stack."""
    return check_resources(rendered.stack, to_resources(rendered), rendered.config, config)


def check_stack(stack: str, config: PackConfig, stacks_dir: Path | None = None) -> StackResult:
    """Render one stack offline and check it; a rendering failure is reported, not raised."""
    try:
        rendered = render_stack(stack, stacks_dir)
    except PlanError as error:
        return StackResult(stack=stack, environment=None, error=str(error))
    return check_rendered(rendered, config)


def load_plan(path: Path, stacks_dir: Path | None = None) -> RenderedStack:
    """An already-rendered stack (``meterplane plan STACK --json`` output) and its config.

    The plan names its stack; the stack's ``meterplane`` configuration (environment,
    retention...) comes from that stack's file, as it does when rendering.
    """
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        stack = str(data["stack"])
        resources = [RenderedResource.from_json(item) for item in data["resources"]]
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise PlanError(f"{path}: not a meterplane plan --json document ({error})") from error
    config = meterplane_config(read_stack_file(stack, stacks_dir))
    return RenderedStack(stack=stack, config=config, resources=resources)


def check_stacks(
    stacks: Iterable[str], config: PackConfig, stacks_dir: Path | None = None, jobs: int = 2
) -> list[StackResult]:
    """Check several stacks; renders run in parallel subprocesses, results keep the order."""
    names = list(stacks)
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        return list(pool.map(lambda name: check_stack(name, config, stacks_dir), names))


@dataclass(frozen=True)
class Selection:
    """Which stacks a change touches, and why."""

    stacks: list[str]
    reason: str


# Paths whose change can alter what any stack renders: every stack must be checked.
SHARED_PATHS = (
    "components/",
    "infra/",
    "policies/",
    "app/meterplane/plan/",
    "app/meterplane/policycheck/",
    "Pulumi.yaml",
    "pyproject.toml",
    "uv.lock",
)


def affected_stacks(changed: Iterable[str], stacks_dir: Path | None = None) -> Selection:
    """The stacks a set of changed repository paths can affect.

    A change to shared infrastructure code (components, program, policies, renderer,
    dependencies) affects every stack; a change to ``stacks/Pulumi.<stack>.yaml`` affects
    that stack; anything else affects none.
    """
    known = list_stacks(stacks_dir)
    paths = [str(PurePosixPath(path.strip())) for path in changed if path.strip()]
    shared = sorted({path for path in paths if path.startswith(SHARED_PATHS)})
    if shared:
        return Selection(known, f"shared code changed ({', '.join(shared[:3])})")
    touched: list[str] = []
    for path in paths:
        name = PurePosixPath(path).name
        if path.startswith("stacks/") and name.startswith("Pulumi.") and name.endswith(".yaml"):
            stack = name.removeprefix("Pulumi.").removesuffix(".yaml")
            if stack in known and stack not in touched:
                touched.append(stack)
    reason = "stack files changed" if touched else "no stack or infrastructure file changed"
    return Selection(sorted(touched), reason)
