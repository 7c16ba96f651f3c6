"""Composition of one stack: the cloud foundation, then the on-cluster workloads."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeAlias

import pulumi

from infra.config import StackConfig
from infra.sizing import Sizing, size
from infra.workloads import Workloads, build_workloads

if TYPE_CHECKING:
    from infra.aws import AwsFoundation
    from infra.azure import AzureFoundation
    from infra.gcp import GcpFoundation

    Foundation: TypeAlias = AwsFoundation | GcpFoundation | AzureFoundation


@dataclass(frozen=True)
class Stack:
    """What the program declared (handles for exports and tests)."""

    config: StackConfig
    sizing: Sizing
    foundation: Foundation
    workloads: Workloads


def _build_foundation(cfg: StackConfig, sizing: Sizing) -> Foundation:
    # Import only the chosen cloud's provider SDK: the others cost seconds to import.
    if cfg.cloud == "aws":
        from infra.aws import build_aws  # noqa: PLC0415

        return build_aws(cfg, sizing)
    if cfg.cloud == "gcp":
        from infra.gcp import build_gcp  # noqa: PLC0415

        return build_gcp(cfg, sizing)
    from infra.azure import build_azure  # noqa: PLC0415

    return build_azure(cfg, sizing)


def build(cfg: StackConfig) -> Stack:
    """Declare the whole stack for a validated config."""
    sizing = size(cfg.throughput, cfg.archive.hot_retention_days)
    foundation = _build_foundation(cfg, sizing)
    workloads = build_workloads(cfg, sizing, foundation.target)
    pulumi.export("release", cfg.release.version)
    pulumi.export("zones", list(foundation.target.zones))
    return Stack(cfg, sizing, foundation, workloads)
