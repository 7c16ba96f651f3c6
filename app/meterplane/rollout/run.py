"""Running a rollout: wave by wave, stack by stack, gated, stopping the line on a failure.

Order of effects, per stack: apply it (``pulumi up``), then wait on the health gate; only
a healthy stack lets the next one start. The first stack whose apply fails or whose gate
fails stops the rollout: every stack after it — in the same wave and in later rings — is
left untouched and reported ``not started``, so a bad release reaches at most one stack
beyond the canaries that already proved it.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from meterplane.rollout.health import Gate
from meterplane.rollout.runner import StackRunner
from meterplane.rollout.waves import Wave


class Outcome(enum.StrEnum):
    """How far one stack got."""

    HEALTHY = "healthy"
    PASSED = "passed (no gate)"
    APPLY_FAILED = "apply failed"
    UNHEALTHY = "unhealthy"
    NOT_STARTED = "not started"


@dataclass(frozen=True)
class StackOutcome:
    """One row of the summary table."""

    stack: str
    ring: str
    version: str
    outcome: Outcome
    apply: str
    health: str
    seconds: float

    def to_json(self) -> dict[str, Any]:
        """The row as ``rollout run --json`` prints it."""
        return {
            "stack": self.stack,
            "ring": self.ring,
            "version": self.version,
            "outcome": self.outcome.value,
            "apply": self.apply,
            "health": self.health,
            "seconds": round(self.seconds, 3),
        }


@dataclass(frozen=True)
class RolloutReport:
    """Every stack's outcome, in rollout order; ``ok`` when all are healthy."""

    rows: tuple[StackOutcome, ...]
    stopped_at: str | None = None

    @property
    def ok(self) -> bool:
        """True when every stack was applied and passed its gate (or had none to pass)."""
        passed = (Outcome.HEALTHY, Outcome.PASSED)
        return self.stopped_at is None and all(r.outcome in passed for r in self.rows)

    def to_json(self) -> dict[str, Any]:
        """``{"ok", "stoppedAt", "stacks": [...]}``."""
        return {
            "ok": self.ok,
            "stoppedAt": self.stopped_at,
            "stacks": [r.to_json() for r in self.rows],
        }

    def table(self) -> str:
        """A plain-text summary table (fixed columns, readable in CI logs)."""
        header = ("STACK", "RING", "VERSION", "OUTCOME", "APPLY", "HEALTH", "TIME")
        body = [
            (
                r.stack,
                r.ring,
                r.version,
                r.outcome.value,
                r.apply,
                r.health,
                f"{r.seconds:.1f}s",
            )
            for r in self.rows
        ]
        widths = [min(60, max(len(row[i]) for row in (header, *body))) for i in range(len(header))]

        def line(cells: Sequence[str]) -> str:
            return "  ".join(
                (c if len(c) <= w else c[: w - 1] + "…").ljust(w)
                for c, w in zip(cells, widths, strict=True)
            ).rstrip()

        if not self.ok:
            verdict = f"rollout STOPPED at {self.stopped_at}"
        elif any(r.outcome is Outcome.PASSED for r in self.rows):
            verdict = "rollout complete (not gated: nothing was changed)"
        else:
            verdict = "rollout complete: every stack healthy"
        return "\n".join([line(header), *(line(row) for row in body), verdict])


@dataclass
class Rollout:
    """Applies waves in order through ``runner``, gating each stack with ``gate``."""

    runner: StackRunner
    gate: Gate
    clock: Callable[[], float] = time.monotonic
    on_event: Callable[[str], None] = field(default=lambda _msg: None)

    def run(self, waves: Sequence[Wave]) -> RolloutReport:
        """Roll ``waves`` out; stop the line on the first failed apply or gate."""
        rows: list[StackOutcome] = []
        stopped_at: str | None = None
        for wave in waves:
            for release in wave.stacks:
                if stopped_at is not None:
                    rows.append(
                        StackOutcome(
                            release.stack,
                            wave.name,
                            release.version,
                            Outcome.NOT_STARTED,
                            "-",
                            "-",
                            0.0,
                        )
                    )
                    continue
                started = self.clock()
                self.on_event(f"[{wave.name}] applying {release.stack} ({release.version})")
                applied = self.runner.apply(release)
                if not applied.ok:
                    stopped_at = release.stack
                    outcome, health = Outcome.APPLY_FAILED, "-"
                else:
                    self.on_event(f"[{wave.name}] {release.stack}: {applied.summary}; gating")
                    verdict = self.gate.wait(release.stack)
                    health = verdict.summary
                    outcome = Outcome.HEALTHY if verdict.ok else Outcome.UNHEALTHY
                    if verdict.ok and not verdict.gated:
                        outcome = Outcome.PASSED
                    if not verdict.ok:
                        stopped_at = release.stack
                self.on_event(f"[{wave.name}] {release.stack}: {outcome.value}")
                rows.append(
                    StackOutcome(
                        release.stack,
                        wave.name,
                        release.version,
                        outcome,
                        applied.summary,
                        health,
                        self.clock() - started,
                    )
                )
        return RolloutReport(tuple(rows), stopped_at)
