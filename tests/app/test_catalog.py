"""Catalog files: the sample loads; bad files fail with the path and the reason."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from meterplane.core.catalog import DEFAULT_CATALOG, load_catalog, parse_catalog
from meterplane.core.errors import ConfigError

SAMPLE: dict[str, Any] = yaml.safe_load(DEFAULT_CATALOG.read_text())


def test_sample_catalog_has_several_plans_addons_and_customers() -> None:
    c = load_catalog()
    assert len(c.doc.plans) >= 3
    assert len(c.doc.addons) >= 2
    assert len(c.customers) >= 4
    # acme: pro (10,000) plus the extra-calls add-on (5,000)
    acme = c.resolved("acme", "api-calls")
    assert acme is not None
    assert acme.usage_limit == 15_000


def _broken(edit: Any) -> dict[str, Any]:
    doc = copy.deepcopy(SAMPLE)
    edit(doc)
    return doc


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: d.update(extra=1), "extra: Extra inputs are not permitted"),
        (
            lambda d: d["features"][0].update(colour="red"),
            "features[0].colour: Extra inputs are not permitted",
        ),
        (
            lambda d: d["plans"][1]["entitlements"].update(nope={}),
            "plans[1].entitlements.nope: unknown feature 'nope'",
        ),
        (
            lambda d: d["customers"][0]["subscription"].update(planId="gold"),
            "customers[0].subscription.planId: unknown plan 'gold'",
        ),
        (
            lambda d: d["customers"][0]["subscription"].update(addons=["ghost"]),
            "customers[0].subscription.addons[0]: unknown add-on 'ghost'",
        ),
        (
            lambda d: d["customers"][0]["subscription"].update(startDate="2026-11-01T00:00:00"),
            "must carry an offset",
        ),
        (
            lambda d: d["features"][1]["meter"]["filters"][0].update(operator="LIKE"),
            "features[1].meter.filters[0].operator",
        ),
        (
            lambda d: d["features"][2]["meter"]["aggregation"].pop("field"),
            "SUM needs a field",
        ),
        (lambda d: d["features"].append(d["features"][0]), "duplicate id 'api-calls'"),
        (
            lambda d: d["plans"][1]["entitlements"].update(sso={"usageLimit": 3}),
            "BOOLEAN feature takes no usageLimit",
        ),
    ],
)
def test_invalid_catalog_names_the_path(edit: Any, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_catalog(_broken(edit), "cat.yaml")
    assert message in str(err.value)
    assert str(err.value).startswith("cat.yaml: ")


def test_unreadable_and_non_mapping_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_catalog(tmp_path / "missing.yaml")
    bad = tmp_path / "list.yaml"
    bad.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_catalog(bad)
    worse = tmp_path / "broken.yaml"
    worse.write_text("features: [\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_catalog(worse)
