"""The pack's definition: which policies it holds and how strictly each one applies.

Levels: every policy is mandatory on a prod stack and advisory on dev and staging; a stack
whose environment cannot be read is treated as prod (a gate that fails open is no gate).
The pack configuration overrides that per policy, in the shape Pulumi itself reads from
``pulumi preview --policy-pack-config FILE`` and ``meterplane policy-check --config FILE``
accepts unchanged::

    {
      "all": "advisory",                                  # every policy (optional)
      "image-pinned": "mandatory",                        # one policy: a level ...
      "node-pools-multi-zone": {"enforcementLevel": "mandatory", "minZones": 2}  # ... or options
    }

A policy's own entry wins over ``all``, which wins over the environment's default.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from policies import (
    encryption,
    exposure,
    hardening,
    redundancy,
    residency,
    retention,
    tagging,
    topics,
)
from policies.core import Level, PolicyConfigError, PolicySpec

PACK_NAME = "meterplane"
PACK_DESCRIPTION = (
    "Meterplane data-plane guardrails: customer-key encryption, no public exposure, zone "
    "redundancy, data residency, retention, workload hardening and tagging."
)

# Listed explicitly (no registration by import side effect); order is the report order.
POLICIES: tuple[PolicySpec, ...] = (
    *encryption.POLICIES,
    *exposure.POLICIES,
    *redundancy.POLICIES,
    *topics.POLICIES,
    *residency.POLICIES,
    *retention.POLICIES,
    *hardening.POLICIES,
    *tagging.POLICIES,
)
BY_NAME: Mapping[str, PolicySpec] = {spec.name: spec for spec in POLICIES}
STRICT_ENVIRONMENTS = frozenset({"prod"})


def default_level(environment: str | None) -> Level:
    """Mandatory for prod (and for an unknown environment), advisory for dev and staging."""
    if environment in ("dev", "staging"):
        return Level.ADVISORY
    return Level.MANDATORY


def _level(value: object, where: str) -> Level:
    try:
        return Level(str(value))
    except ValueError:
        allowed = ", ".join(level.value for level in Level)
        raise PolicyConfigError(
            f"{where}: unknown enforcement level {value!r} ({allowed})"
        ) from None


@dataclass(frozen=True)
class PackConfig:
    """Parsed pack configuration: level overrides and policy options."""

    all_level: Level | None = None
    levels: Mapping[str, Level] = field(default_factory=dict)
    options: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    @classmethod
    def parse(cls, raw: Mapping[str, Any] | None) -> PackConfig:
        """Validate a configuration mapping (unknown policies and options are errors)."""
        all_level: Level | None = None
        levels: dict[str, Level] = {}
        options: dict[str, Mapping[str, Any]] = {}
        for key, value in (raw or {}).items():
            if key == "all":
                level = value.get("enforcementLevel") if isinstance(value, Mapping) else value
                all_level = _level(level, "all")
                continue
            spec = BY_NAME.get(key)
            if spec is None:
                raise PolicyConfigError(f"unknown policy {key!r}; policies: {', '.join(BY_NAME)}")
            if isinstance(value, Mapping):
                if "enforcementLevel" in value:
                    levels[key] = _level(value["enforcementLevel"], key)
                spec.resolve_options(value)  # rejects unknown options now, not mid-run
                options[key] = {k: v for k, v in value.items() if k != "enforcementLevel"}
            else:
                levels[key] = _level(value, key)
        return cls(all_level, levels, options)

    @classmethod
    def load(cls, path: Path) -> PackConfig:
        """Read a JSON (or YAML) configuration file."""
        text = path.read_text(encoding="utf-8")
        try:
            raw = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
        except (json.JSONDecodeError, yaml.YAMLError) as error:
            raise PolicyConfigError(f"{path}: not valid JSON/YAML: {error}") from error
        if raw is not None and not isinstance(raw, Mapping):
            raise PolicyConfigError(f"{path}: the configuration must be a mapping")
        return cls.parse(raw)

    def level(self, spec: PolicySpec, environment: str | None) -> Level:
        """The level ``spec`` applies at on a stack of ``environment``."""
        level = self.levels.get(spec.name) or self.all_level or default_level(environment)
        # Stack policies cannot remediate; the engine reports remediate as mandatory.
        return Level.MANDATORY if level is Level.REMEDIATE else level

    def options_for(self, spec: PolicySpec) -> dict[str, Any]:
        """``spec``'s options with the configured values over the defaults."""
        return spec.resolve_options(self.options.get(spec.name))
