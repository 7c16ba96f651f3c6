"""The pack definition: policy set, environment levels and the pack configuration shape."""

from __future__ import annotations

from pathlib import Path

import pytest
from policytest_support import level

from policies.core import PolicyConfigError, PolicySpec, Severity
from policies.registry import POLICIES, PackConfig

DOMAINS = {
    "encryption",
    "exposure",
    "redundancy",
    "residency",
    "retention",
    "hardening",
    "tagging",
    "topics",
}


def test_pack_covers_every_domain_with_unique_names() -> None:
    names = [spec.name for spec in POLICIES]
    assert len(names) == len(set(names))
    assert {spec.domain for spec in POLICIES} == DOMAINS


@pytest.mark.parametrize("spec", POLICIES, ids=lambda spec: spec.name)
def test_levels_default_by_environment_and_yield_to_config(spec: PolicySpec) -> None:
    name = spec.name
    assert level(name, None, "prod") == "mandatory"
    assert level(name, None, "staging") == "advisory"
    assert level(name, None, "dev") == "advisory"
    assert level(name, None, "qa") == "mandatory"  # unknown environment: fail closed
    assert level(name, {name: "advisory"}, "prod") == "advisory"
    assert level(name, {name: {"enforcementLevel": "mandatory"}}, "dev") == "mandatory"
    assert level(name, {"all": "disabled"}, "prod") == "disabled"
    assert (
        level(name, {"all": {"enforcementLevel": "advisory"}, name: "mandatory"}, "dev")
        == "mandatory"
    )
    assert level(name, {name: "remediate"}, "dev") == "mandatory"


@pytest.mark.parametrize(
    ("raw", "error"),
    [
        ({"no-such-policy": "advisory"}, "unknown policy 'no-such-policy'"),
        ({"image-pinned": "strict"}, "unknown enforcement level 'strict'"),
        ({"all": "loud"}, "unknown enforcement level 'loud'"),
        ({"node-pools-multi-zone": {"minZone": 2}}, "unknown option 'minZone' (options: minZones)"),
    ],
)
def test_malformed_config_is_rejected(raw: dict[str, object], error: str) -> None:
    with pytest.raises(PolicyConfigError, match=error.replace("(", r"\(").replace(")", r"\)")):
        PackConfig.parse(raw)


def test_options_overlay_defaults() -> None:
    config = PackConfig.parse(
        {"node-pools-multi-zone": {"enforcementLevel": "advisory", "minZones": 2}}
    )
    spec = next(spec for spec in POLICIES if spec.name == "node-pools-multi-zone")
    assert config.options_for(spec) == {"minZones": 2}
    other = next(spec for spec in POLICIES if spec.name == "kms-key-rotation")
    assert config.options_for(other) == {"maxRotationDays": 365}


def test_config_files_json_and_yaml(tmp_path: Path) -> None:
    json_file = tmp_path / "pack.json"
    json_file.write_text('{"all": "advisory", "image-pinned": "mandatory"}')
    yaml_file = tmp_path / "pack.yaml"
    yaml_file.write_text("all: advisory\nimage-pinned: mandatory\n")
    assert PackConfig.load(json_file) == PackConfig.load(yaml_file)
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    with pytest.raises(PolicyConfigError, match="not valid JSON/YAML"):
        PackConfig.load(broken)
    listed = tmp_path / "list.yaml"
    listed.write_text("- image-pinned\n")
    with pytest.raises(PolicyConfigError, match="must be a mapping"):
        PackConfig.load(listed)


def test_policy_spec_guards_its_own_shape() -> None:
    with pytest.raises(TypeError, match="exactly one"):
        PolicySpec(name="x", description="x", domain="x", severity=Severity.LOW, remediation="x")
    with pytest.raises(TypeError, match="needs a default"):
        PolicySpec(
            name="x",
            description="x",
            domain="x",
            severity=Severity.LOW,
            remediation="x",
            validate_resource=lambda resource, context: iter(()),
            options={"n": {"type": "integer"}},
        )
