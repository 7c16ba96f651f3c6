"""Render stacks in the test process under Pulumi mocks, once each.

``PlanSession`` calls ``set_mocks`` (and resets Pulumi's process-wide state) before the
program is imported and run, then waits for every registration, so the recorded inputs
are complete. Each stack is rendered once per test process and shared: tests assert on
the recorded engine inputs inside an ``apply`` over the components' real outputs.
"""

from __future__ import annotations

import functools
import json
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pulumi

# The provider SDKs are ~100 MB of Python. Without a bytecode cache (this repo's shells
# set PYTHONDONTWRITEBYTECODE) every run recompiles them: keep one under .cache/.
REPO = Path(__file__).resolve().parents[2]
if sys.pycache_prefix is None:
    sys.pycache_prefix = str(REPO / ".cache" / "pycache")
sys.dont_write_bytecode = False

from meterplane.plan._engine import PlanSession  # noqa: E402 after the cache settings
from meterplane.plan._mocks import PlanMocks  # noqa: E402
from meterplane.plan.model import RenderedResource, RenderedStack  # noqa: E402

STACKS = {"aws": "acme-prod", "gcp": "globex-prod", "azure": "initech-prod"}
DEV_STACK = "acme-dev"


def install_default_mocks() -> None:
    """Mocks for the whole test process, installed by conftest before any test module
    imports a component or the program (each render then installs its own)."""
    pulumi.runtime.set_mocks(
        PlanMocks(region="us-east-1"), project="meterplane", stack="test", preview=False
    )


@dataclass(frozen=True)
class Rendered:
    """A stack rendered in this process: recorded inputs plus the program's handles."""

    session: PlanSession
    program: Any  # infra.stack.Stack

    @property
    def view(self) -> RenderedStack:
        """Every registered resource with its engine inputs."""
        return self.session.rendered()


def render_program(stack: str, stacks_dir: Path | None = None) -> Rendered:
    """Set mocks, then import and run the program for ``stack`` (not cached)."""
    session = PlanSession(stack, stacks_dir)  # set_mocks happens here
    # The program is imported only now, after set_mocks.
    from infra import config  # noqa: PLC0415
    from infra import stack as program  # noqa: PLC0415

    with warnings.catch_warnings():
        # The provider SDKs warn at import time about classes this program never uses
        # (e.g. pulumi_aws.ec2.EncryptionControl); only those third-party warnings are muted.
        warnings.filterwarnings(
            "ignore",
            category=DeprecationWarning,
            module=r"pulumi_(aws|gcp|azure_native|kubernetes)(\..*)?$",
        )
        handles = session.run(lambda: program.build(config.load()))
    return Rendered(session, handles)


@functools.cache
def rendered(stack: str) -> Rendered:
    """``stacks/Pulumi.<stack>.yaml`` rendered once per test process."""
    return render_program(stack)


def of_type(view: RenderedStack, type_token: str) -> list[RenderedResource]:
    """Resources of one type (fails the test if there are none)."""
    found = view.of_type(type_token)
    assert found, f"no {type_token} in {view.stack}"
    return found


def one(view: RenderedStack, type_token: str) -> RenderedResource:
    """The single resource of a type."""
    found = of_type(view, type_token)
    assert len(found) == 1, f"{len(found)} x {type_token} in {view.stack}"
    return found[0]


def k8s_objects(view: RenderedStack, kind: str) -> list[RenderedResource]:
    """Kubernetes objects of a kind (any API group/version)."""
    return [
        r
        for r in view.resources
        if r.type.startswith("kubernetes:") and r.type.endswith(f":{kind}")
    ]


def children_of(view: RenderedStack, component_urn: str) -> list[RenderedResource]:
    """Every resource below a component."""
    direct = [r for r in view.resources if r.parent == component_urn]
    return direct + [c for r in direct for c in children_of(view, r.urn)]


def policy_document(text: str) -> dict[str, Any]:
    """An IAM policy input as data."""
    document: dict[str, Any] = json.loads(text)
    return document


def check(*outputs: Any) -> Any:
    """``Output.all`` shorthand for tests: ``return check(a, b).apply(fn)``."""
    return pulumi.Output.all(*outputs)
