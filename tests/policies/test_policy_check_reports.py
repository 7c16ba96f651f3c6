"""policy-check report rendering and stack selection, on hand-made results (no rendering)."""

from __future__ import annotations

import json
from pathlib import Path

from policytest_support import STACK, res

from meterplane.policycheck import affected_stacks, check_resources, render_json, render_text
from meterplane.policycheck.runner import StackResult
from policies.registry import POLICIES, PackConfig

KEY = res("aws:kms/key:Key", "key", {"enableKeyRotation": False, "tags": {}})


def _result(environment: str) -> StackResult:
    return check_resources(
        f"acme-{environment}", [KEY], {**STACK, "environment": environment}, PackConfig()
    )


def test_text_summary_names_verdict_policy_resource_and_message() -> None:
    text = render_text(
        [
            _result("prod"),
            _result("dev"),
            StackResult("broken", None, error="zones: prod stacks must span at least 3 zones"),
        ]
    )
    lines = text.splitlines()
    assert (
        lines[0] == "acme-prod (prod): FAIL - 2 mandatory, 0 advisory violation(s); "
        f"{len(POLICIES)} policies over 1 resources"
    )
    assert lines[1].split() == [
        "MANDATORY",
        "kms-key-rotation",
        "Key",
        "key",
        "does",
        "not",
        "rotate",
        "(enableKeyRotation",
        "is",
        "not",
        "true)",
    ]
    assert lines[3].startswith("acme-dev (dev): PASS - 0 mandatory, 2 advisory violation(s)")
    assert lines[4].split()[:2] == ["ADVISORY", "kms-key-rotation"]
    assert (
        lines[6] == "broken (unknown environment): ERROR - could not render: "
        "zones: prod stacks must span at least 3 zones"
    )
    assert lines[-1] == "blocked: acme-prod, broken (mandatory violations or render errors)"


def test_json_report_carries_levels_and_findings() -> None:
    document = json.loads(render_json([_result("prod"), _result("dev")]))
    assert document["passed"] is False
    prod, dev = document["stacks"]
    assert prod["verdict"] == "fail"
    assert dev["verdict"] == "pass"
    assert prod["policies"]["kms-key-rotation"] == "mandatory"
    assert dev["policies"]["kms-key-rotation"] == "advisory"
    assert {finding["policy"] for finding in prod["findings"]} == {
        "kms-key-rotation",
        "required-labels",
    }
    assert prod["findings"][0]["urn"] == KEY.urn
    assert prod["findings"][0]["resourceType"] == "aws:kms/key:Key"


def test_empty_stack_passes() -> None:
    result = check_resources("acme-prod", [], STACK, PackConfig())
    assert result.findings == ()
    assert render_text([result]).endswith("all 1 stack(s) pass\n")


def _stacks(tmp_path: Path) -> Path:
    for name in ("acme-prod", "acme-dev", "globex-prod"):
        (tmp_path / f"Pulumi.{name}.yaml").write_text("config: {}\n")
    return tmp_path


def test_shared_code_changes_affect_every_stack(tmp_path: Path) -> None:
    stacks = _stacks(tmp_path)
    for path in ("components/k8s/kafka.py", "policies/exposure.py", "infra/aws.py", "uv.lock"):
        assert affected_stacks([path], stacks).stacks == ["acme-dev", "acme-prod", "globex-prod"]


def test_stack_file_changes_affect_only_those_stacks(tmp_path: Path) -> None:
    stacks = _stacks(tmp_path)
    selection = affected_stacks(
        [
            "stacks/Pulumi.globex-prod.yaml",
            "stacks/Pulumi.acme-dev.yaml",
            "stacks/Pulumi.gone.yaml",
            "README.md",
        ],
        stacks,
    )
    assert selection.stacks == ["acme-dev", "globex-prod"]
    assert affected_stacks(["README.md", "app/meterplane/http/app.py", ""], stacks).stacks == []
