"""Finding and reading ``stacks/Pulumi.<stack>.yaml`` files (data only)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import yaml

from meterplane.plan.model import PlanError

PROJECT = "meterplane"
NAMESPACE = "meterplane"


def project_dir() -> Path | None:
    """The checkout holding ``Pulumi.yaml`` and ``infra/``, if the program runs from one."""
    import infra  # noqa: PLC0415 the program's location anchors the project

    root = Path(infra.__file__).resolve().parent.parent
    return root if (root / "Pulumi.yaml").is_file() else None


def default_stacks_dir() -> Path:
    """``$METERPLANE_STACKS_DIR``, else ``stacks/`` next to the project's ``Pulumi.yaml``."""
    env = os.environ.get("METERPLANE_STACKS_DIR")
    if env:
        return Path(env)
    root = project_dir()
    if root is None:
        raise PlanError("no stacks directory: set METERPLANE_STACKS_DIR or pass --stacks-dir")
    return root / "stacks"


def list_stacks(stacks_dir: Path | None = None) -> list[str]:
    """Names of every stack in the stacks directory, sorted."""
    directory = stacks_dir or default_stacks_dir()
    return sorted(
        p.name.removeprefix("Pulumi.").removesuffix(".yaml")
        for p in directory.glob("Pulumi.*.yaml")
    )


def read_stack_file(stack: str, stacks_dir: Path | None = None) -> dict[str, Any]:
    """The stack file's ``config:`` mapping, keys fully qualified (``ns:key``)."""
    directory = stacks_dir or default_stacks_dir()
    path = directory / f"Pulumi.{stack}.yaml"
    if not path.is_file():
        known = ", ".join(list_stacks(directory)) or "none"
        raise PlanError(f"stack {stack!r}: no file {path} (known stacks: {known})")
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise PlanError(f"stack {stack!r}: {path} is not valid YAML: {exc}") from None
    config = document.get("config") or {}
    if not isinstance(config, dict):
        raise PlanError(f"stack {stack!r}: 'config' in {path} must be a mapping")
    return {(k if ":" in k else f"{PROJECT}:{k}"): v for k, v in config.items()}


def meterplane_config(config: dict[str, Any]) -> dict[str, Any]:
    """The ``meterplane:`` keys as plain data, prefix removed."""
    prefix = f"{NAMESPACE}:"
    return {k.removeprefix(prefix): v for k, v in config.items() if k.startswith(prefix)}


def engine_config(config: dict[str, Any]) -> dict[str, str]:
    """Config as the engine passes it to a program: strings, structured values as JSON."""
    return {k: v if isinstance(v, str) else json.dumps(v) for k, v in config.items()}
