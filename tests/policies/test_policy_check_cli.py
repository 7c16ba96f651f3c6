"""`meterplane policy-check` end to end: real renders, stacks broken on purpose, reports.

The broken stacks are test fixtures built from the real ``acme-prod`` stack: its file is
copied into a temporary stacks directory (for the dev variant with ``environment: dev``
and a single zone, which the configuration allows outside prod), the stack is rendered
offline like ``meterplane plan`` does, and the rendered resources are then broken the way
a bad change would break them before being handed to ``policy-check --plan``.
"""

from __future__ import annotations

import json
import shutil
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import xmlschema
import yaml

from meterplane.cli import main
from meterplane.plan import list_stacks, render_stack
from meterplane.plan.stackfiles import default_stacks_dir

pytestmark = pytest.mark.slow

SCHEMAS = Path(__file__).parent / "schemas"
SOURCE_STACK = "acme-prod"
BROKEN_POLICIES = {
    "node-pools-multi-zone": "Cluster",
    "bucket-customer-key": "Bucket",
    "cold-tier-lifecycle": "Bucket",
    "image-pinned": "Deployment",
}


def _stack_file(stacks: Path, name: str, **changes: Any) -> None:
    document = yaml.safe_load((default_stacks_dir() / f"Pulumi.{SOURCE_STACK}.yaml").read_text())
    for key, value in changes.items():
        document["config"][f"meterplane:{key}"] = value
    (stacks / f"Pulumi.{name}.yaml").write_text(yaml.safe_dump(document))


@pytest.fixture(scope="module")
def stacks_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A stacks directory with the real prod stack and a dev copy of it in one zone."""
    stacks = tmp_path_factory.mktemp("stacks")
    shutil.copy(default_stacks_dir() / f"Pulumi.{SOURCE_STACK}.yaml", stacks)
    _stack_file(stacks, "acme-dev", environment="dev", zones=1)
    return stacks


@pytest.fixture(scope="module")
def plans(stacks_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """``meterplane plan --json`` documents: prod intact and broken, dev broken."""
    out = tmp_path_factory.mktemp("plans")
    prod = render_stack(SOURCE_STACK, stacks_dir).to_json()
    dev = render_stack("acme-dev", stacks_dir).to_json()
    files = {
        "prod": prod,
        "prod-broken": _break(json.loads(json.dumps(prod)), zones=True),
        # The dev stack is already in one zone by configuration.
        "dev-broken": _break(dev, zones=False),
    }
    paths = {}
    for name, document in files.items():
        paths[name] = out / f"{name}.json"
        paths[name].write_text(json.dumps(document))
    return paths


def _of_type(document: dict[str, Any], token: str) -> Iterator[dict[str, Any]]:
    return (item for item in document["resources"] if item["type"] == token)


def _break(document: dict[str, Any], *, zones: bool) -> dict[str, Any]:
    """One zone, the bucket without the customer key, no lifecycle, an image on latest."""
    if zones:
        groups = list(_of_type(document, "aws:eks/nodeGroup:NodeGroup"))
        first = groups[0]["inputs"]["subnetIds"]
        for group in groups:
            group["inputs"]["subnetIds"] = list(first)
    for sse in _of_type(
        document,
        "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration",
    ):
        for rule in sse["inputs"]["rules"]:
            rule["applyServerSideEncryptionByDefault"].pop("kmsMasterKeyId")
    document["resources"] = [
        item
        for item in document["resources"]
        if item["type"] != "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration"
    ]
    ingest = next(
        item
        for item in _of_type(document, "kubernetes:apps/v1:Deployment")
        if item["name"].endswith("ingest-deployment")
    )
    container = ingest["inputs"]["spec"]["template"]["spec"]["containers"][0]
    container["image"] = container["image"].rsplit(":", 1)[0] + ":latest"
    return document


def _run(*argv: str) -> int:
    return main(["policy-check", *argv])


def _check(stacks_dir: Path, plans: list[Path], out: Path, *options: str) -> int:
    """``policy-check`` of rendered plans against ``stacks_dir``, its report written to ``out``."""
    argv = [arg for plan in plans for arg in ("--plan", str(plan))]
    return _run(*argv, "--stacks-dir", str(stacks_dir), *options, "--output", str(out))


def _report(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())  # type: ignore[no-any-return]


def _policies_by_level(report: dict[str, Any]) -> dict[str, set[tuple[str, str]]]:
    found: dict[str, set[tuple[str, str]]] = {}
    for finding in report["stacks"][0]["findings"]:
        kind = finding["resourceType"].rsplit(":", 1)[-1]
        found.setdefault(finding["level"], set()).add((finding["policy"], kind))
    return found


def test_intact_prod_stack_does_not_violate_the_broken_policies(
    plans: dict[str, Path], stacks_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "intact.json"
    _check(stacks_dir, [plans["prod"]], out, "--format", "json")
    policies = {finding["policy"] for finding in _report(out)["stacks"][0]["findings"]}
    assert not policies & set(BROKEN_POLICIES)


def test_broken_prod_stack_fails_naming_each_policy_and_resource(
    plans: dict[str, Path], stacks_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "prod.json"
    code = _check(stacks_dir, [plans["prod-broken"]], out, "--format", "json")
    assert code == 1
    mandatory = _policies_by_level(_report(out))["mandatory"]
    assert set(BROKEN_POLICIES.items()) <= mandatory
    summary = capsys.readouterr().out
    assert "acme-prod (prod): FAIL" in summary
    assert "MANDATORY  node-pools-multi-zone" in summary
    assert "Cluster acme-prod-cluster-eks has node pools in 1 zone(s)" in summary
    assert (
        "Bucket acme-prod-archive-bucket is not encrypted under the customer's KMS key" in summary
    )
    assert "Bucket acme-prod-archive-bucket has no lifecycle rule" in summary
    assert "Deployment acme-prod-ingest-deployment" in summary
    assert ":latest is tagged latest" in summary


def test_same_break_on_dev_is_advisory_and_exits_zero(
    plans: dict[str, Path], stacks_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "dev.json"
    code = _check(stacks_dir, [plans["dev-broken"]], out, "--format", "json")
    assert code == 0
    levels = _policies_by_level(_report(out))
    assert "mandatory" not in levels
    assert set(BROKEN_POLICIES.items()) <= levels["advisory"]
    assert "acme-dev (dev): PASS" in capsys.readouterr().out


def test_pack_config_makes_dev_mandatory_and_prod_advisory(
    plans: dict[str, Path], stacks_dir: Path, tmp_path: Path
) -> None:
    strict = tmp_path / "strict.json"
    strict.write_text(json.dumps({"image-pinned": {"enforcementLevel": "mandatory"}}))
    assert (
        _check(stacks_dir, [plans["dev-broken"]], tmp_path / "r.txt", "--config", str(strict)) == 1
    )
    lenient = tmp_path / "lenient.yaml"
    lenient.write_text("all: advisory\n")
    assert (
        _check(stacks_dir, [plans["prod-broken"]], tmp_path / "r.txt", "--config", str(lenient))
        == 0
    )


def test_bad_pack_config_is_a_usage_error(
    stacks_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"no-such-policy": "advisory"}))
    assert _run("--stacks-dir", str(stacks_dir), "--config", str(bad)) == 2
    assert "unknown policy 'no-such-policy'" in capsys.readouterr().err


def test_sarif_report_validates_against_the_2_1_0_schema(
    plans: dict[str, Path], stacks_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "report.sarif"
    _check(stacks_dir, [plans["prod-broken"], plans["dev-broken"]], out, "--format", "sarif")
    log = _report(out)
    schema = json.loads((SCHEMAS / "sarif-2.1.0-rtm.5.json").read_text())
    jsonschema.Draft4Validator.check_schema(schema)
    jsonschema.Draft4Validator(schema).validate(log)
    results = log["runs"][0]["results"]
    rules = [rule["id"] for rule in log["runs"][0]["tool"]["driver"]["rules"]]
    by_stack = {(r["properties"]["stack"], r["ruleId"], r["level"]) for r in results}
    for policy in BROKEN_POLICIES:
        assert ("acme-prod", policy, "error") in by_stack
        assert ("acme-dev", policy, "warning") in by_stack
    assert all(rules[r["ruleIndex"]] == r["ruleId"] for r in results)
    assert {r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] for r in results} == {
        "stacks/Pulumi.acme-prod.yaml",
        "stacks/Pulumi.acme-dev.yaml",
    }


def test_sarif_schema_rejects_a_broken_log(
    plans: dict[str, Path], stacks_dir: Path, tmp_path: Path
) -> None:
    # The validation above can fail: the same schema refuses a result without a message.
    out = tmp_path / "report.sarif"
    _check(stacks_dir, [plans["prod-broken"]], out, "--format", "sarif")
    log = _report(out)
    del log["runs"][0]["results"][0]["message"]
    schema = json.loads((SCHEMAS / "sarif-2.1.0-rtm.5.json").read_text())
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft4Validator(schema).validate(log)


def test_junit_report_validates_against_the_xsd(
    plans: dict[str, Path], stacks_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "report.xml"
    _check(stacks_dir, [plans["prod-broken"], plans["dev-broken"]], out, "--format", "junit")
    xmlschema.XMLSchema(SCHEMAS / "junit-10.xsd").validate(str(out))
    root = ET.parse(out).getroot()
    suites = {suite.get("name"): suite for suite in root.iter("testsuite")}
    assert set(suites) == {"acme-prod", "acme-dev"}
    prod_failures = {
        case.get("name")
        for case in suites["acme-prod"].iter("testcase")
        if case.find("failure") is not None
    }
    assert set(BROKEN_POLICIES) <= prod_failures
    assert suites["acme-dev"].get("failures") == "0"
    dev_advice = {
        case.get("name")
        for case in suites["acme-dev"].iter("testcase")
        if case.find("system-out") is not None
    }
    assert set(BROKEN_POLICIES) <= dev_advice
    assert int(root.get("failures", "0")) == int(suites["acme-prod"].get("failures", "0")) >= 4


def test_changed_files_select_the_affected_stacks(
    stacks_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    changed = tmp_path / "changed.txt"
    changed.write_text("README.md\napp/meterplane/http/app.py\n")
    assert _run("--stacks-dir", str(stacks_dir), "--changed-files", str(changed)) == 0
    assert "no stack to check" in capsys.readouterr().out
    changed.write_text("stacks/Pulumi.acme-dev.yaml\n")
    assert (
        _run(
            "--stacks-dir",
            str(stacks_dir),
            "--changed-files",
            str(changed),
            "--format",
            "json",
            "--output",
            str(tmp_path / "r.json"),
        )
        == 0
    )
    assert [stack["stack"] for stack in _report(tmp_path / "r.json")["stacks"]] == ["acme-dev"]


def test_unrenderable_stack_blocks(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _stack_file(tmp_path, "acme-prod", zones=1)  # prod must span three zones
    assert _run("--stacks-dir", str(tmp_path), "acme-prod") == 1
    assert "acme-prod (unknown environment): ERROR - could not render" in capsys.readouterr().out


@pytest.mark.parametrize("stack", list_stacks())
def test_every_stack_passes(stack: str, tmp_path: Path) -> None:
    out = tmp_path / "report.json"
    assert _run(stack, "--format", "json", "--output", str(out)) == 0
    report = _report(out)["stacks"][0]
    assert report["error"] is None
    assert report["resources"] > 0
    assert report["summary"]["mandatory"] == 0
    assert report["verdict"] == "pass"
