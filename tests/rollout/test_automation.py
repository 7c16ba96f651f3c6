"""``rollout run`` through the Pulumi Automation API with a real Pulumi CLI.

The CLI runs with a local file backend in a temporary directory (no Pulumi Cloud, no
cloud credentials) against an inline program, so only the CLI binary is needed. The health
gate after each stack is the real HTTP gate against a real ``meterplane serve``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pulumi
import pytest
from pulumi import automation as auto

from meterplane.rollout import (
    AutomationStackRunner,
    GateSettings,
    HealthGate,
    HttpHealthProbe,
    Outcome,
    Rollout,
    StackRelease,
    group_waves,
)
from tests.release.serving import serve
from tests.rollout.pulumicli import ensure_pulumi_cli

BROKEN: set[str] = set()


class Plane(pulumi.ComponentResource):
    """A stand-in for the data plane: a component whose output is the release it runs."""

    def __init__(self, name: str, release: str) -> None:
        super().__init__("meterplane:test:Plane", name, None)
        self.release = pulumi.Output.from_input(release)
        self.register_outputs({"release": self.release})


def program() -> None:
    stack = pulumi.get_stack()
    if stack in BROKEN:
        raise RuntimeError(f"program refuses stack {stack}")
    release = pulumi.Config("meterplane").get("release") or "0.0.0"
    plane = Plane(f"{stack}-plane", release)
    pulumi.export("release", plane.release)


@pytest.fixture(scope="module")
def pulumi_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    state = tmp_path_factory.mktemp("pulumi-state")
    home = tmp_path_factory.mktemp("pulumi-home")
    return {
        "PULUMI_BACKEND_URL": f"file://{state}",
        "PULUMI_CONFIG_PASSPHRASE": "rollout-test-passphrase",
        "PULUMI_HOME": str(home),
        "PULUMI_SKIP_UPDATE_CHECK": "true",
        "PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION": "true",
    }


@pytest.fixture(scope="module")
def plane_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with serve(tmp_path_factory.mktemp("plane") / "data") as (_, url):
        yield url


def runner(env: dict[str, str], **kw: Any) -> AutomationStackRunner:
    return AutomationStackRunner(
        program=program,
        project_name="meterplane-rollout-test",
        pulumi_root=ensure_pulumi_cli(),
        env=env,
        **kw,
    )


FLEET = [
    StackRelease("c1", "canary", "2.0.0"),
    StackRelease("e1", "early", "2.0.0"),
    StackRelease("g1", "general", "2.0.0"),
]


@pytest.mark.slow
@pytest.mark.pulumi_cli
def test_rollout_applies_gates_and_stops_the_line_with_the_real_cli(
    pulumi_env: dict[str, str], plane_url: str
) -> None:
    probe = HttpHealthProbe({s.stack: plane_url for s in FLEET})
    gate = HealthGate(probe, settings=GateSettings(timeout_s=20, interval_s=0.2, soak_s=0.5))
    BROKEN.add("e1")
    try:
        report = Rollout(runner(pulumi_env), gate).run(group_waves(FLEET))
    finally:
        BROKEN.discard("e1")
    assert [(r.stack, r.outcome) for r in report.rows] == [
        ("c1", Outcome.HEALTHY),
        ("e1", Outcome.APPLY_FAILED),
        ("g1", Outcome.NOT_STARTED),
    ]
    assert report.stopped_at == "e1"
    assert "program refuses stack e1" in report.rows[1].apply
    assert report.rows[0].apply.startswith("succeeded: ")
    assert "create" in report.rows[0].apply

    # The fix goes out: the canary is unchanged, the rest are created and gated.
    try:
        again = Rollout(runner(pulumi_env), gate).run(group_waves(FLEET))
    finally:
        probe.close()
    assert again.ok, again.table()
    assert again.rows[0].apply == "succeeded: 2 same"
    assert all(r.outcome is Outcome.HEALTHY for r in again.rows)


@pytest.mark.slow
@pytest.mark.pulumi_cli
def test_preview_only_changes_nothing(pulumi_env: dict[str, str]) -> None:
    fresh = StackRelease("p1", "canary", "2.0.0")
    result = runner(pulumi_env, preview_only=True).apply(fresh)
    assert result.ok, result.summary
    assert result.summary == "preview: 2 create"  # the stack and its component
    stack = auto.select_stack(
        "p1",
        project_name="meterplane-rollout-test",
        program=program,
        opts=auto.LocalWorkspaceOptions(
            env_vars=pulumi_env,
            pulumi_command=auto.PulumiCommand(root=str(ensure_pulumi_cli())),
        ),
    )
    assert stack.history() == []  # a preview is not an update
