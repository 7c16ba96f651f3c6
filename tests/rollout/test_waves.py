"""Waves: stacks grouped by ``release.ring``, lowest ring first, from real stack files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from meterplane import __version__
from meterplane.cli import main
from meterplane.rollout import RINGS, RolloutError, StackRelease, group_waves, plan_waves

STACK = """\
config:
  meterplane:customer: {customer}
  meterplane:environment: dev
  meterplane:cloud: aws
  meterplane:region: us-east-1
  meterplane:zones: 1
  meterplane:throughput: 1000
  meterplane:archive: {{hotRetentionDays: 7, retentionDays: 30}}
  meterplane:controlPlane:
    endpoint: https://sync.example.com
    environmentId: env-{customer}
    egressCidrs: [192.0.2.0/24]
{release}"""


def write_stack(directory: Path, customer: str, ring: str | None, version: str | None) -> str:
    release = ""
    if ring or version:
        fields = ", ".join(
            f"{k}: {v}" for k, v in (("ring", ring), ("version", version)) if v is not None
        )
        release = f"  meterplane:release: {{{fields}}}\n"
    text = STACK.format(customer=customer, release=release)
    (directory / f"Pulumi.{customer}-dev.yaml").write_text(text)
    return f"{customer}-dev"


@pytest.fixture
def fleet(tmp_path: Path) -> Path:
    write_stack(tmp_path, "zeta", "canary", "1.2.0")
    write_stack(tmp_path, "alpha", "general", "1.2.0")
    write_stack(tmp_path, "beta", "early", None)
    write_stack(tmp_path, "gamma", "canary", "1.2.0")
    write_stack(tmp_path, "delta", None, None)  # no ring: general
    return tmp_path


def test_waves_go_lowest_ring_first_with_stacks_sorted(fleet: Path) -> None:
    waves = plan_waves(stacks_dir=fleet)
    assert [(w.ring, w.name) for w in waves] == [(0, "canary"), (1, "early"), (2, "general")]
    assert [[s.stack for s in w.stacks] for w in waves] == [
        ["gamma-dev", "zeta-dev"],
        ["beta-dev"],
        ["alpha-dev", "delta-dev"],
    ]


def test_version_defaults_to_the_code_version(fleet: Path) -> None:
    by_stack = {s.stack: s for w in plan_waves(stacks_dir=fleet) for s in w.stacks}
    assert by_stack["zeta-dev"].version == "1.2.0"
    assert by_stack["beta-dev"].version == __version__


def test_empty_rings_are_left_out_and_a_subset_can_be_planned(fleet: Path) -> None:
    waves = plan_waves(["alpha-dev", "zeta-dev"], fleet)
    assert [w.name for w in waves] == ["canary", "general"]
    assert [w.ring for w in waves] == [0, 2]


def test_unknown_ring_is_refused() -> None:
    with pytest.raises(RolloutError, match="unknown ring 'beta'"):
        group_waves([StackRelease("a", "beta", "1.0.0")])


def test_an_invalid_stack_file_stops_the_plan_naming_the_key(tmp_path: Path) -> None:
    write_stack(tmp_path, "alpha", "nightly", None)
    with pytest.raises(RolloutError, match=r"meterplane:release\.ring"):
        plan_waves(stacks_dir=tmp_path)


def test_missing_and_duplicate_stacks_are_refused(fleet: Path) -> None:
    with pytest.raises(RolloutError, match="no file"):
        plan_waves(["nope-dev"], fleet)
    with pytest.raises(RolloutError, match="more than once"):
        plan_waves(["alpha-dev", "alpha-dev"], fleet)


def test_cli_plan_json_contract(fleet: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["rollout", "plan", "--json", "--stacks-dir", str(fleet)]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [(w["ring"], w["stacks"]) for w in data["waves"]] == [
        (0, ["gamma-dev", "zeta-dev"]),
        (1, ["beta-dev"]),
        (2, ["alpha-dev", "delta-dev"]),
    ]
    assert [w["name"] for w in data["waves"]] == list(RINGS)


def test_cli_plan_ring_filter_and_text(fleet: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["rollout", "plan", "--ring", "early", "--stacks-dir", str(fleet)]) == 0
    out = capsys.readouterr().out
    assert out.strip().splitlines() == [f"wave 1: ring 1 early: beta-dev ({__version__})"]
    assert main(["rollout", "plan", "--ring", "nightly", "--stacks-dir", str(fleet)]) == 2
    assert "unknown ring" in capsys.readouterr().err


def test_the_repository_stacks_plan(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["rollout", "plan", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    planned = sorted(s for w in data["waves"] for s in w["stacks"])
    assert planned == ["acme-dev", "acme-prod", "globex-prod", "initech-prod"]
    rings = [w["ring"] for w in data["waves"]]
    assert rings == sorted(rings)
