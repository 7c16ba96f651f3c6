"""The pull-request workflow: well-formed, and it calls policy-check the way the CLI accepts."""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path
from typing import Any

import yaml

from meterplane.commands import policy_check

WORKFLOW = Path(__file__).resolve().parents[2] / ".github" / "workflows" / "pr.yml"


def _workflow() -> dict[Any, Any]:
    document = yaml.safe_load(WORKFLOW.read_text())
    assert isinstance(document, dict)
    return document


def _policy_check_calls() -> list[list[str]]:
    calls = []
    for job in _workflow()["jobs"].values():
        for step in job["steps"]:
            for line in str(step.get("run", "")).splitlines():
                words = shlex.split(line.replace('"${plans[@]}"', "--plan plans/a.json"))
                if "policy-check" in words:
                    tail = words[words.index("policy-check") + 1 :]
                    calls.append(tail[: tail.index("--output") + 2])
    return calls


def test_workflow_runs_on_pull_requests_with_the_three_jobs() -> None:
    document = _workflow()
    assert "pull_request" in document[True]  # YAML 1.1 reads the key `on` as true
    jobs = document["jobs"]
    assert set(jobs) == {"test", "policy-check", "preview"}
    assert any(step.get("run") == "./.ci/run" for step in jobs["test"]["steps"])
    uploads = [
        step for step in jobs["policy-check"]["steps"] if "upload-sarif" in step.get("uses", "")
    ]
    assert uploads[0]["with"]["sarif_file"] == "reports/policy-check.sarif"
    assert jobs["policy-check"]["permissions"]["security-events"] == "write"
    preview = jobs["preview"]
    assert "PULUMI_PREVIEW_ENABLED" in preview["if"]
    assert "--policy-pack policies" in preview["steps"][-1]["run"]


def test_workflow_policy_check_arguments_parse() -> None:
    calls = _policy_check_calls()
    assert {call[call.index("--format") + 1] for call in calls} == {"sarif", "junit"}
    for call in calls:
        parser = argparse.ArgumentParser()
        policy_check.add_arguments(parser)
        args = parser.parse_args(call)
        assert args.plan == [Path("plans/a.json")]
