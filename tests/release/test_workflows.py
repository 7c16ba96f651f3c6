"""The GitHub workflows: valid (actionlint), and main rolls out ring by ring with promotion."""

from __future__ import annotations

import argparse
import shlex
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from meterplane.commands import rollout
from meterplane.rollout import RINGS
from tests.release.gotools import REPO, ensure_actionlint

WORKFLOWS = sorted((REPO / ".github" / "workflows").glob("*.yml"))
MAIN = REPO / ".github" / "workflows" / "main.yml"


def _main() -> dict[Any, Any]:
    document = yaml.safe_load(MAIN.read_text())
    assert isinstance(document, dict)
    return document


@pytest.mark.slow
def test_every_workflow_passes_actionlint() -> None:
    assert {p.name for p in WORKFLOWS} >= {"pr.yml", "main.yml"}
    actionlint = ensure_actionlint()
    done = subprocess.run(
        [str(actionlint), "-no-color", *map(str, WORKFLOWS)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_actionlint_rejects_a_broken_workflow(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yml"
    broken.write_text(
        "on: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n    needs: [missing]\n"
        "    steps:\n      - run: echo ${{ github.nope.nope }}\n"
    )
    done = subprocess.run(
        [str(ensure_actionlint()), "-no-color", str(broken)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 1
    assert "missing" in done.stdout


def test_main_builds_images_then_rolls_out_ring_by_ring_with_promotion() -> None:
    document = _main()
    assert document[True]["push"]["branches"] == ["main"]  # YAML 1.1 reads `on` as true
    assert document["concurrency"]["cancel-in-progress"] is False
    jobs = document["jobs"]
    assert jobs["images"]["needs"] == ["test", "release"]
    assert jobs["images"]["permissions"]["packages"] == "write"
    dockerfiles = {entry["dockerfile"] for entry in jobs["images"]["strategy"]["matrix"]["include"]}
    assert dockerfiles == {"docker/Dockerfile.app", "docker/Dockerfile.flink-job"}
    for dockerfile in dockerfiles:
        assert (REPO / dockerfile).is_file()
    previous = "images"
    for ring in RINGS:
        job = jobs[f"rollout-{ring}"]
        assert job["environment"] == f"rollout-{ring}"  # manual promotion: env reviewers
        assert previous in job["needs"]
        assert job["env"]["RING"] == ring
        previous = f"rollout-{ring}"


def _rollout_calls() -> list[list[str]]:
    calls = []
    for job in _main()["jobs"].values():
        for step in job["steps"]:
            for line in str(step.get("run", "")).splitlines():
                if "meterplane rollout" in line:
                    words = shlex.split(line.split("|")[0].replace('"${RING}"', "canary"))
                    calls.append(words[words.index("rollout") + 1 :])
    return calls


def test_main_calls_rollout_the_way_the_cli_parses() -> None:
    calls = _rollout_calls()
    assert ["plan"] in calls
    assert ["run", "--dry-run"] in calls
    assert ["run", "--ring", "canary", "--policy-pack", "policies"] in calls
    for call in calls:
        parser = argparse.ArgumentParser()
        rollout.add_arguments(parser)
        parser.parse_args(call)
