"""Applying one stack: the :class:`StackRunner` interface and its implementations.

- :class:`AutomationStackRunner` drives the Pulumi CLI through the Automation API
  (``pulumi up``, or ``pulumi preview`` with ``preview_only``) for the project's program
  (``Pulumi.yaml`` + ``infra/``, stack config from ``stacks/``) or for an inline program.
  Credentials and the state backend come from the environment exactly as for a person
  running ``pulumi up`` (``PULUMI_BACKEND_URL``/``PULUMI_ACCESS_TOKEN``, cloud OIDC).
- :class:`OfflineStackRunner` is the stand-in behind ``--dry-run``: it renders the stack
  offline (the real program under Pulumi mocks, :func:`meterplane.plan.render_stack`) and
  checks that every Meterplane image is pinned to the stack's ``release.version``. It needs
  no CLI, no credentials and no cloud, and fails where the real apply would fail first: on
  an invalid stack or a program error.
"""

from __future__ import annotations

import json
import re
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from meterplane.plan import PlanError, RenderedStack, render_stack
from meterplane.rollout.waves import StackRelease
from policies.topics import deployed_partitions

_IMAGE_REPOSITORIES = ("ghcr.io/meterplane/",)


@dataclass(frozen=True)
class ApplyResult:
    """What applying one stack did; ``changes`` counts resources by operation."""

    stack: str
    ok: bool
    summary: str
    changes: Mapping[str, int] = field(default_factory=dict)
    outputs: Mapping[str, Any] = field(default_factory=dict)


class StackRunner(Protocol):
    """Brings one stack to the configuration in the repository."""

    def apply(self, release: StackRelease) -> ApplyResult:
        """Apply ``release.stack``; failures are returned (``ok=False``), not raised."""


def _tail(text: str, lines: int = 6) -> str:
    kept = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    return " | ".join(kept[-lines:]) or "no output"


def _describe(changes: Mapping[str, int]) -> str:
    shown = ", ".join(f"{n} {op}" for op, n in sorted(changes.items()) if n)
    return shown or "no changes"


@dataclass
class AutomationStackRunner:
    """``pulumi up`` (or ``preview``) per stack through the Automation API.

    Give ``work_dir`` (a directory with ``Pulumi.yaml``: the project's own program) or
    ``program`` (an inline program, with ``project_name``). ``pulumi_root`` pins the
    directory whose ``bin/pulumi`` is used (default: ``pulumi`` on PATH). ``env`` is added
    to the CLI's environment (backend URL, passphrase). ``policy_packs`` run on every
    update, so CrossGuard refuses a bad change at apply time as well as in review.
    """

    work_dir: Path | None = None
    program: Callable[[], None] | None = None
    project_name: str = "meterplane"
    preview_only: bool = False
    pulumi_root: Path | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    policy_packs: Sequence[str] = ()
    on_output: Callable[[str], None] | None = None

    def __post_init__(self) -> None:
        if (self.work_dir is None) == (self.program is None):
            raise ValueError("AutomationStackRunner: give exactly one of work_dir or program")

    def _stack(self, name: str) -> Any:
        from pulumi import automation as auto  # noqa: PLC0415 - only a real apply needs it

        command = None
        if self.pulumi_root is not None:
            command = auto.PulumiCommand(root=str(self.pulumi_root))
        opts = auto.LocalWorkspaceOptions(env_vars=dict(self.env), pulumi_command=command)
        if self.program is not None:
            return auto.create_or_select_stack(
                stack_name=name, project_name=self.project_name, program=self.program, opts=opts
            )
        return auto.create_or_select_stack(stack_name=name, work_dir=str(self.work_dir), opts=opts)

    def _policy_configs(self, stack: Any, work: Path) -> list[str] | None:
        """One pack config per policy pack, carrying the deployed topic partitions.

        CrossGuard sees only the desired state; the partitions on the cluster now come
        from the stack's state so ``kafka-partitions-never-decrease`` can compare.
        """
        if not self.policy_packs:
            return None
        deployment = stack.export_stack().deployment or {}
        config = pack_config_from_state(deployment)
        path = work / "policy-pack-config.json"
        path.write_text(json.dumps(config), encoding="utf-8")
        return [str(path)] * len(self.policy_packs)

    def apply(self, release: StackRelease) -> ApplyResult:
        """Run the update; a failed command becomes ``ok=False`` with its last lines."""
        from pulumi import automation as auto  # noqa: PLC0415

        packs = list(self.policy_packs) or None
        try:
            with tempfile.TemporaryDirectory(prefix="meterplane-rollout-") as work:
                return self._apply(release, packs, Path(work))
        except auto.errors.CommandError as exc:
            return ApplyResult(release.stack, False, _tail(str(exc)))

    def _apply(self, release: StackRelease, packs: list[str] | None, work: Path) -> ApplyResult:
        stack = self._stack(release.stack)
        configs = self._policy_configs(stack, work)
        if self.preview_only:
            preview = stack.preview(
                color="never",
                on_output=self.on_output,
                policy_packs=packs,
                policy_pack_configs=configs,
            )
            changes = {op: int(n) for op, n in preview.change_summary.items()}
            return ApplyResult(release.stack, True, f"preview: {_describe(changes)}", changes)
        result = stack.up(
            color="never",
            on_output=self.on_output,
            policy_packs=packs,
            policy_pack_configs=configs,
        )
        changes = {op: int(n) for op, n in (result.summary.resource_changes or {}).items()}
        outputs = {k: v.value for k, v in result.outputs.items() if not v.secret}
        ok = result.summary.result == "succeeded"
        return ApplyResult(
            release.stack, ok, f"{result.summary.result}: {_describe(changes)}", changes, outputs
        )


def pack_config_from_state(deployment: Mapping[str, Any]) -> dict[str, Any]:
    """The policy-pack config for an update of a stack whose state is ``deployment``.

    ``deployment`` is the ``deployment`` object of ``pulumi stack export`` (resources with
    ``type`` and ``inputs``); an empty state (a new stack) yields an empty baseline.
    """
    resources = deployment.get("resources") or []
    pairs = ((str(r.get("type")), r.get("inputs") or {}) for r in resources)
    return {"kafka-partitions-never-decrease": {"deployedPartitions": deployed_partitions(pairs)}}


def meterplane_images(rendered: RenderedStack) -> Iterator[tuple[str, str]]:
    """(resource name, image) for every Meterplane image the stack deploys."""

    def walk(value: Any) -> Iterator[str]:
        if isinstance(value, dict):
            image = value.get("image")
            if isinstance(image, str) and image.startswith(_IMAGE_REPOSITORIES):
                yield image
            for item in value.values():
                yield from walk(item)
        elif isinstance(value, list):
            for item in value:
                yield from walk(item)

    for resource in rendered.resources:
        for image in walk(resource.inputs):
            yield resource.name, image


@dataclass
class OfflineStackRunner:
    """The stand-in runner of ``--dry-run``: offline render + release pin check."""

    stacks_dir: Path | None = None
    render: Callable[[str, Path | None], RenderedStack] = render_stack

    def apply(self, release: StackRelease) -> ApplyResult:
        """Render ``release.stack`` offline; fail on a render error or a mispinned image."""
        try:
            rendered = self.render(release.stack, self.stacks_dir)
        except PlanError as exc:
            return ApplyResult(release.stack, False, f"render failed: {exc}")
        images = list(meterplane_images(rendered))
        tag = re.compile(rf":{re.escape(release.version)}$")
        wrong = sorted({f"{name}: {image}" for name, image in images if not tag.search(image)})
        if not images:
            return ApplyResult(release.stack, False, "no Meterplane image in the rendered stack")
        if wrong:
            return ApplyResult(
                release.stack,
                False,
                f"images not on release {release.version}: {'; '.join(wrong[:3])}",
            )
        return ApplyResult(
            release.stack,
            True,
            f"rendered {len(rendered.resources)} resources offline; "
            f"{len(images)} images on {release.version}",
            {"rendered": len(rendered.resources)},
        )
