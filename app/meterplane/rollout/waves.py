"""Grouping stacks into rollout waves by ``meterplane:release.ring``.

Rings are ordered canary → early → general; a wave holds every stack of one ring, in
name order, and waves go out lowest ring first. The ring and the release version are read
from the stack files and validated with the same model the program uses
(:func:`infra.config.parse`), so a stack that could not deploy cannot be planned either.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from infra.config import StackConfigError, parse
from meterplane.plan.model import PlanError
from meterplane.plan.stackfiles import list_stacks, meterplane_config, read_stack_file
from meterplane.rollout.errors import RolloutError

# The order waves go out in; the position is the ring's number in ``--json``.
RINGS: tuple[str, ...] = ("canary", "early", "general")


@dataclass(frozen=True)
class StackRelease:
    """One stack's place in a rollout: its ring and the version its images are pinned to."""

    stack: str
    ring: str
    version: str


@dataclass(frozen=True)
class Wave:
    """Every stack of one ring; ``ring`` is the ring's position in :data:`RINGS`."""

    ring: int
    name: str
    stacks: tuple[StackRelease, ...]

    def to_json(self) -> dict[str, Any]:
        """``{"ring": N, "name": ..., "stacks": [...]}`` as ``rollout plan --json`` prints."""
        return {
            "ring": self.ring,
            "name": self.name,
            "stacks": [s.stack for s in self.stacks],
            "versions": {s.stack: s.version for s in self.stacks},
        }


def read_release(stack: str, stacks_dir: Path | None = None) -> StackRelease:
    """The validated ring and version of one stack file."""
    try:
        cfg = parse(meterplane_config(read_stack_file(stack, stacks_dir)))
    except PlanError as exc:
        raise RolloutError(str(exc)) from None
    except StackConfigError as exc:
        raise RolloutError(f"stack {stack!r}: {exc}") from None
    return StackRelease(stack, cfg.release.ring, cfg.release.version)


def group_waves(releases: Iterable[StackRelease]) -> list[Wave]:
    """Waves in ring order (empty rings left out), stacks sorted by name within a wave."""
    by_ring: dict[str, list[StackRelease]] = {ring: [] for ring in RINGS}
    for release in releases:
        if release.ring not in by_ring:
            raise RolloutError(f"stack {release.stack!r}: unknown ring {release.ring!r}")
        by_ring[release.ring].append(release)
    return [
        Wave(RINGS.index(ring), ring, tuple(sorted(members, key=lambda r: r.stack)))
        for ring, members in by_ring.items()
        if members
    ]


def plan_waves(stacks: Sequence[str] = (), stacks_dir: Path | None = None) -> list[Wave]:
    """Waves over ``stacks`` (default: every stack file), read from the stacks directory."""
    try:
        names = list(stacks) or list_stacks(stacks_dir)
    except PlanError as exc:
        raise RolloutError(str(exc)) from None
    if len(set(names)) != len(names):
        raise RolloutError("a stack is named more than once")
    return group_waves(read_release(name, stacks_dir) for name in names)
