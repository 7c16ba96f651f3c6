"""Running waves: order, the gate between stacks, stop-the-line, the summary, ``--dry-run``."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from meterplane.cli import main
from meterplane.plan import RenderedResource, RenderedStack
from meterplane.rollout import (
    ApplyResult,
    Check,
    GateResult,
    OfflineStackRunner,
    Outcome,
    Rollout,
    StackRelease,
    group_waves,
)
from meterplane.rollout.runner import pack_config_from_state


@dataclass
class ScriptedRunner:
    """Stack runner double: records what it applied; the named stacks fail."""

    failing: frozenset[str] = frozenset()
    applied: list[str] = field(default_factory=list)

    def apply(self, release: StackRelease) -> ApplyResult:
        self.applied.append(release.stack)
        if release.stack in self.failing:
            return ApplyResult(release.stack, False, "error: update failed")
        return ApplyResult(release.stack, True, "succeeded: 3 update", {"update": 3})


@dataclass
class ScriptedGate:
    """Gate double: records what it watched; the named stacks are unhealthy."""

    unhealthy: frozenset[str] = frozenset()
    watched: list[str] = field(default_factory=list)

    def wait(self, stack: str) -> GateResult:
        self.watched.append(stack)
        ok = stack not in self.unhealthy
        detail = "ok" if ok else "41.0% server errors"
        return GateResult(ok, (Check("error-rate", ok, detail, fatal=not ok),), 12.0)


FLEET = [
    StackRelease("c1", "canary", "2.0.0"),
    StackRelease("c2", "canary", "2.0.0"),
    StackRelease("e1", "early", "2.0.0"),
    StackRelease("g1", "general", "2.0.0"),
    StackRelease("g2", "general", "2.0.0"),
]


def test_every_stack_applied_and_gated_in_ring_order() -> None:
    runner, gate = ScriptedRunner(), ScriptedGate()
    waves = group_waves(reversed(FLEET))
    report = Rollout(runner, gate).run(waves)
    assert report.ok
    assert report.stopped_at is None
    assert runner.applied == ["c1", "c2", "e1", "g1", "g2"]
    assert gate.watched == runner.applied  # each stack gated right after its apply
    assert all(r.outcome is Outcome.HEALTHY for r in report.rows)


def test_an_unhealthy_canary_stops_the_line() -> None:
    runner, gate = ScriptedRunner(), ScriptedGate(unhealthy=frozenset({"c2"}))
    report = Rollout(runner, gate).run(group_waves(FLEET))
    assert not report.ok
    assert report.stopped_at == "c2"
    assert runner.applied == ["c1", "c2"]  # nothing after the unhealthy stack is touched
    assert [(r.stack, r.outcome) for r in report.rows] == [
        ("c1", Outcome.HEALTHY),
        ("c2", Outcome.UNHEALTHY),
        ("e1", Outcome.NOT_STARTED),
        ("g1", Outcome.NOT_STARTED),
        ("g2", Outcome.NOT_STARTED),
    ]
    assert "41.0% server errors" in report.rows[1].health


def test_a_failed_apply_stops_the_line_without_gating_it() -> None:
    runner, gate = ScriptedRunner(failing=frozenset({"e1"})), ScriptedGate()
    report = Rollout(runner, gate).run(group_waves(FLEET))
    assert report.stopped_at == "e1"
    assert runner.applied == ["c1", "c2", "e1"]
    assert gate.watched == ["c1", "c2"]
    assert report.rows[2].outcome is Outcome.APPLY_FAILED


def test_summary_table_and_json() -> None:
    report = Rollout(ScriptedRunner(), ScriptedGate(unhealthy=frozenset({"e1"}))).run(
        group_waves(FLEET)
    )
    lines = report.table().splitlines()
    assert lines[0].split() == ["STACK", "RING", "VERSION", "OUTCOME", "APPLY", "HEALTH", "TIME"]
    assert lines[1].split()[:4] == ["c1", "canary", "2.0.0", "healthy"]
    assert "e1" in lines[3]
    assert "unhealthy" in lines[3]
    assert "not started" in lines[4]
    assert lines[-1] == "rollout STOPPED at e1"
    data = report.to_json()
    assert data["ok"] is False
    assert data["stoppedAt"] == "e1"
    assert [s["outcome"] for s in data["stacks"]] == [
        "healthy",
        "healthy",
        "unhealthy",
        "not started",
        "not started",
    ]


def _rendered(*images: str) -> RenderedStack:
    resources = [
        RenderedResource(
            f"urn:pulumi:s::meterplane::kubernetes:apps/v1:Deployment::d{i}",
            "kubernetes:apps/v1:Deployment",
            f"d{i}",
            f"id{i}",
            None,
            {"spec": {"template": {"spec": {"containers": [{"name": "c", "image": image}]}}}},
        )
        for i, image in enumerate(images)
    ]
    return RenderedStack("s", {}, resources)


def test_offline_runner_checks_every_image_is_on_the_release() -> None:
    good = _rendered("ghcr.io/meterplane/meterplane:2.0.0", "ghcr.io/meterplane/flink-job:2.0.0")
    runner = OfflineStackRunner(render=lambda _stack, _dir: good)
    result = runner.apply(StackRelease("s", "canary", "2.0.0"))
    assert result.ok, result.summary
    assert "2 images on 2.0.0" in result.summary

    mixed = _rendered("ghcr.io/meterplane/meterplane:2.0.0", "ghcr.io/meterplane/flink-job:1.9.0")
    result = OfflineStackRunner(render=lambda _s, _d: mixed).apply(
        StackRelease("s", "canary", "2.0.0")
    )
    assert not result.ok
    assert "flink-job:1.9.0" in result.summary


def test_dry_run_renders_the_canary_ring_offline(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["rollout", "run", "--dry-run", "--ring", "canary", "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0, out
    assert [s["stack"] for s in out["stacks"]] == ["acme-dev", "initech-prod"]
    for row in out["stacks"]:
        assert row["outcome"] == "passed (no gate)"
        assert "resources offline" in row["apply"]
        assert row["health"] == "gate: skipped (dry run)"


def test_offline_runner_reports_a_stack_that_does_not_render(tmp_path: Path) -> None:
    repo_stacks = Path(__file__).resolve().parents[2] / "stacks"
    text = (repo_stacks / "Pulumi.acme-dev.yaml").read_text()
    # Edited after the waves were planned: the program refuses it, the runner reports it.
    (tmp_path / "Pulumi.acme-dev.yaml").write_text(text.replace("zones: 1", "zones: 7"))
    result = OfflineStackRunner(tmp_path).apply(StackRelease("acme-dev", "canary", "0.1.0"))
    assert not result.ok
    assert result.summary.startswith("render failed:")
    assert "zones" in result.summary


def test_policy_config_carries_the_deployed_partitions() -> None:
    deployment = {
        "resources": [
            {
                "urn": "urn:pulumi:s::p::kubernetes:kafka.strimzi.io/v1:KafkaTopic::events",
                "type": "kubernetes:kafka.strimzi.io/v1:KafkaTopic",
                "inputs": {
                    "metadata": {"name": "events", "namespace": "metering"},
                    "spec": {"partitions": 48, "replicas": 3},
                },
            },
            {"urn": "urn:pulumi:s::p::pulumi:pulumi:Stack::p-s", "type": "pulumi:pulumi:Stack"},
        ]
    }
    config = pack_config_from_state(deployment)
    assert config == {
        "kafka-partitions-never-decrease": {"deployedPartitions": {"metering/events": 48}}
    }
    json.dumps(config)  # what the runner writes for --policy-pack-config
    assert pack_config_from_state({}) == {
        "kafka-partitions-never-decrease": {"deployedPartitions": {}}
    }


def test_a_real_run_without_health_urls_refuses_before_touching_any_stack(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("METERPLANE_ROLLOUT_HEALTH_URLS", raising=False)
    assert main(["rollout", "run", "--ring", "canary", "--health-url", "acme-dev=http://h:1"]) == 2
    assert "no health URL for initech-prod" in capsys.readouterr().err
    monkeypatch.setenv("METERPLANE_ROLLOUT_HEALTH_URLS", "[1]")
    assert main(["rollout", "run", "--ring", "canary"]) == 2
    assert "must be a JSON object" in capsys.readouterr().err
    monkeypatch.setenv("METERPLANE_ROLLOUT_HEALTH_URLS", '{"acme-dev": "ftp://x"}')
    assert main(["rollout", "run", "--ring", "canary"]) == 2
    assert "expected STACK=http(s)://" in capsys.readouterr().err
