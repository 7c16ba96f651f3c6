"""Catalog files: the sample loads; bad files fail with the path and the reason."""

from __future__ import annotations

import copy
import functools
import operator
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from meterplane.core.catalog import DEFAULT_CATALOG, Catalog, load_catalog, parse_catalog
from meterplane.core.counters import CounterBook, Outcome
from meterplane.core.errors import ConfigError
from meterplane.core.timeutil import now_us
from meterplane.entitlements.decide import Decider

SAMPLE: dict[str, Any] = yaml.safe_load(DEFAULT_CATALOG.read_text())
EVENTS: list[tuple[str, dict[str, Any]]] = [
    ("api_call", {"region": "us"}),
    ("completion", {"tokens": 5, "latency_ms": 2.5}),
    ("login", {"user": "u1"}),
    ("storage_snapshot", {"gb": 3}),
    ("api_call", {"region": 1}),
]


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


def _places(node: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """The path of every key and list item in a document."""
    if path:
        yield path
    items = (
        node.items()
        if isinstance(node, dict)
        else enumerate(node)
        if isinstance(node, list)
        else ()
    )
    for k, v in items:
        yield from _places(v, (*path, k))


ODD_VALUES: list[Any] = [None, 0, -1, 1.5, True, "", "x", [], {}, 10**30, float("nan"), ["a"]]
ODD_VALUES += ["2026-01-31T00:00:00Z", "2026-01-31", "HOUR", "COUNT", "IN", "api-calls", "pro"]


def _mutated(r: random.Random) -> dict[str, Any]:
    """The sample with one to three places removed, retyped, repeated or swapped."""
    doc = copy.deepcopy(SAMPLE)
    for _ in range(r.randint(1, 3)):
        places = list(_places(doc))
        path = r.choice(places)
        parent = functools.reduce(operator.getitem, path[:-1], doc)
        op = r.randrange(4)
        if op == 0:
            parent.pop(path[-1])
        elif op == 1:
            parent[path[-1]] = copy.deepcopy(r.choice(ODD_VALUES))
        elif op == 2 and isinstance(parent, list):
            parent.append(copy.deepcopy(parent[path[-1]]))
        else:
            other = functools.reduce(operator.getitem, r.choice(places), doc)
            parent[path[-1]] = copy.deepcopy(other)
    return doc


def _same(catalog: Catalog) -> Catalog:
    return catalog


def test_a_mutated_catalog_is_refused_in_one_error_or_serves_decisions() -> None:
    """What a control plane might push: never a crash, in loading or in deciding on it."""
    r = random.Random(5)
    refusals, loaded = [], 0
    for _ in range(400):
        doc = _mutated(r)
        try:
            catalog = parse_catalog(doc, "cat.yaml")
        except ConfigError as err:
            refusals.append(str(err))
            continue
        loaded += 1
        book, out, now = CounterBook(catalog), Outcome(), now_us()
        for i, customer in enumerate([*catalog.customers, "stranger"]):
            for name, dims in EVENTS:
                book.apply_event(customer, name, f"k{i}{name}", now - i * 10**9, dims, "r", out)
            for feature in catalog.features:
                book.apply_usage(customer, feature, f"u{i}{feature}", now, 2, i % 2 == 0, "", out)
        decider = Decider(functools.partial(_same, catalog), book)
        for customer in [*catalog.customers, "stranger"]:
            for feature in [*catalog.features, "nope"]:
                assert decider.check(customer, feature, 1).customerId == customer
            decider.list(customer)
    assert all(message.startswith("cat.yaml: ") for message in refusals)
    assert min(len(refusals), loaded) > 20, (len(refusals), loaded)
