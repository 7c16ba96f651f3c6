"""Composition of one stack: the cloud foundation, then the on-cluster workloads."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pulumi

from components.k8s.target import ClusterTarget
from infra.config import StackConfig
from infra.sizing import Sizing, size
from infra.workloads import Workloads, build_workloads


@dataclass(frozen=True)
class Stack:
    """What the program declared (handles for exports and tests)."""

    config: StackConfig
    sizing: Sizing
    target: ClusterTarget
    workloads: Workloads


def _foundation(cloud: str) -> Callable[[StackConfig, Sizing], ClusterTarget]:
    # Import only the chosen cloud's provider SDK: the others cost seconds to import.
    if cloud == "aws":
        from infra.aws import build_aws  # noqa: PLC0415

        return build_aws
    if cloud == "gcp":
        from infra.gcp import build_gcp  # noqa: PLC0415

        return build_gcp
    from infra.azure import build_azure  # noqa: PLC0415

    return build_azure


def build(cfg: StackConfig) -> Stack:
    """Declare the whole stack for a validated config."""
    sizing = size(cfg.throughput, cfg.archive.hot_retention_days)
    target = _foundation(cfg.cloud)(cfg, sizing)
    workloads = build_workloads(cfg, sizing, target)
    pulumi.export("release", cfg.release.version)
    pulumi.export("zones", list(target.zones))
    return Stack(cfg, sizing, target, workloads)
