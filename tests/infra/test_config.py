"""Stack configuration: validated at the edge, errors name the key path, nothing declared."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from infra.config import StackConfig, StackConfigError, parse
from meterplane import __version__
from meterplane.plan.stackfiles import list_stacks, meterplane_config, read_stack_file
from tests.infra.harness import REPO, render_program

VALID: dict[str, Any] = {
    "customer": "acme",
    "environment": "prod",
    "cloud": "aws",
    "region": "us-east-1",
    "zones": 3,
    "throughput": 50_000,
    "archive": {"hotRetentionDays": 30, "retentionDays": 400},
    "controlPlane": {
        "endpoint": "https://cp.example.com",
        "environmentId": "env-1",
        "egressCidrs": ["198.51.100.0/24"],
    },
}


def _problems(raw: dict[str, Any]) -> list[tuple[str, str]]:
    with pytest.raises(StackConfigError) as caught:
        parse(raw)
    return caught.value.problems


def test_valid_config_is_frozen_with_defaults() -> None:
    cfg = parse(VALID)
    assert isinstance(cfg, StackConfig)
    assert cfg.release.version == __version__
    assert cfg.features.entitlements is True
    assert cfg.name == "acme-prod"
    with pytest.raises(ValueError, match="frozen"):
        cfg.zones = 1  # type: ignore[misc]


@pytest.mark.parametrize(
    ("change", "path", "reason"),
    [
        ({"zone": 3}, "meterplane:zone", "Extra inputs"),
        ({"cloud": "ibm"}, "meterplane:cloud", "'aws', 'gcp' or 'azure'"),
        ({"zones": 0}, "meterplane:zones", "greater than or equal to 1"),
        ({"zones": 2}, "meterplane:zones", "prod stacks must span at least 3 zones"),
        ({"throughput": -5}, "meterplane:throughput", "greater than or equal to 1"),
        (
            {"archive": {"hotRetentionDays": 30, "retentionDays": 7}},
            "meterplane:archive.retentionDays",
            "at least hotRetentionDays",
        ),
        (
            {"archive": {"hotRetentionDays": 30, "retentionDays": 400, "ttl": 3}},
            "meterplane:archive.ttl",
            "Extra inputs",
        ),
        (
            {"controlPlane": {**VALID["controlPlane"], "endpoint": "http://cp.example.com"}},
            "meterplane:controlPlane.endpoint",
            "https",
        ),
        (
            {"controlPlane": {**VALID["controlPlane"], "egressCidrs": []}},
            "meterplane:controlPlane.egressCidrs",
            "at least 1",
        ),
        (
            {
                "controlPlane": {
                    **VALID["controlPlane"],
                    "egressCidrs": ["198.51.100.0/24", "not-a-cidr"],
                }
            },
            "meterplane:controlPlane.egressCidrs[1]",
            "",
        ),
        ({"cloud": "gcp"}, "meterplane:gcp", "required when cloud is gcp"),
        ({"gcp": {"project": "some-project"}}, "meterplane:gcp", "not allowed when cloud is aws"),
        (
            {"features": {"entitlements": True, "localCustomerData": False}},
            "meterplane:features.entitlements",
            "needs features.localCustomerData",
        ),
        ({"release": {"version": "latest"}}, "meterplane:release.version", "pattern"),
    ],
)
def test_invalid_config_names_the_key_path(change: dict[str, Any], path: str, reason: str) -> None:
    problems = _problems({**VALID, **change})
    assert [p for p, _ in problems] == [path]
    assert reason in problems[0][1]


def test_every_committed_stack_is_valid_and_covers_every_cloud() -> None:
    stacks = list_stacks()
    configs = [parse(meterplane_config(read_stack_file(s))) for s in stacks]
    assert {c.cloud for c in configs} == {"aws", "gcp", "azure"}
    assert any(c.environment == "dev" for c in configs)
    assert all(f"{c.customer}-{c.environment}" == s for c, s in zip(configs, stacks, strict=True))


def _write_stack(
    directory: Path, name: str, change: dict[str, Any], drop: str | None = None
) -> None:
    document = yaml.safe_load((REPO / "stacks" / "Pulumi.acme-prod.yaml").read_text())
    config = document["config"]
    if drop:
        config.pop(drop)
    config.update({f"meterplane:{k}": v for k, v in change.items()})
    (directory / f"Pulumi.{name}.yaml").write_text(yaml.safe_dump(document))


@pytest.mark.parametrize(
    ("change", "path"),
    [
        ({"zone": 3}, "meterplane:zone"),
        ({"cloud": "ibm"}, "meterplane:cloud"),
        ({"zones": 0}, "meterplane:zones"),
    ],
)
def test_invalid_stack_is_rejected_before_any_resource(
    tmp_path: Path, change: dict[str, Any], path: str
) -> None:
    _write_stack(tmp_path, "broken-prod", change)
    with pytest.raises(StackConfigError) as caught:
        render_program("broken-prod", tmp_path)
    assert [p for p, _ in caught.value.problems] == [path]
    from pulumi.runtime import settings  # noqa: PLC0415

    # The failed run's mock monitor saw no registration at all.
    monitor = settings.SETTINGS.monitor
    assert monitor.registrations == []


def test_missing_required_key_is_named(tmp_path: Path) -> None:
    _write_stack(tmp_path, "partial-prod", {}, drop="meterplane:controlPlane")
    with pytest.raises(StackConfigError) as caught:
        render_program("partial-prod", tmp_path)
    assert caught.value.problems == [("meterplane:controlPlane", "Field required")]


def test_existing_key_is_refused_on_azure() -> None:
    problems = _problems(
        {
            **VALID,
            "cloud": "azure",
            "archive": {
                "hotRetentionDays": 30,
                "retentionDays": 400,
                "kmsKeyId": "https://kv/keys/k",
            },
        }
    )
    assert [p for p, _ in problems] == ["meterplane:archive.kmsKeyId"]
