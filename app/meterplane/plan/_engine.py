"""Running the real Pulumi program in this process under :class:`PlanMocks`.

Pulumi's runtime settings, root stack resource and config are process-wide context
variables. A :class:`PlanSession` resets all three before it starts, so sessions can run
one after another in one process (the test suite does this); they must never overlap.
``render_stack`` in the package runs each stack in a fresh subprocess instead, which is
the robust choice for the CLI and the policy check.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pulumi
from pulumi.runtime import config as runtime_config
from pulumi.runtime import mocks as runtime_mocks
from pulumi.runtime import settings as runtime_settings
from pulumi.runtime.stack import run_pulumi_func
from pulumi.runtime.sync_await import _sync_await

from meterplane.plan._mocks import PlanMocks
from meterplane.plan.model import RenderedResource, RenderedStack
from meterplane.plan.stackfiles import (
    PROJECT,
    engine_config,
    meterplane_config,
    read_stack_file,
)

T = TypeVar("T")


class _RecordingMonitor(runtime_mocks.MockMonitor):
    """A mock monitor that also remembers each registration's URN and parent."""

    def __init__(self, mocks: PlanMocks) -> None:
        super().__init__(mocks)
        self.plan_mocks = mocks
        self._lock = threading.Lock()
        self.registrations: list[tuple[str, str, str, str, bool]] = []

    def RegisterResource(self, request: Any) -> Any:  # noqa: N802 gRPC method name
        response = super().RegisterResource(request)  # type: ignore[no-untyped-call]
        if request.type != "pulumi:pulumi:Stack":
            with self._lock:
                self.registrations.append(
                    (response.urn, request.type, request.name, request.parent, bool(request.custom))
                )
        return response


class PlanSession:
    """One stack's mocked Pulumi runtime: configure, run the program, collect resources."""

    def __init__(self, stack: str, stacks_dir: Path | None = None) -> None:
        self.stack = stack
        self.full_config = read_stack_file(stack, stacks_dir)
        self.config = meterplane_config(self.full_config)
        gcp = self.config.get("gcp")
        self.mocks = PlanMocks(
            region=str(self.config.get("region", "us-east-1")),
            gcp_project=gcp.get("project") if isinstance(gcp, dict) else None,
        )
        self.monitor = _RecordingMonitor(self.mocks)
        # Forget the previous session's root stack and config before installing ours.
        runtime_settings.ROOT.set(None)
        runtime_config.CONFIG.set({})
        runtime_mocks.set_mocks(
            self.mocks, project=PROJECT, stack=stack, preview=False, monitor=self.monitor
        )
        runtime_config.set_all_config(engine_config(self.full_config))

    def run(self, program: Callable[[], T]) -> T:
        """Run ``program`` like the engine does and wait for every registration."""
        box: list[T] = []
        _sync_await(run_pulumi_func(lambda: box.append(program())))
        return box[0]

    def resources(self) -> list[RenderedResource]:
        """Everything registered so far, in URN order."""
        with self.monitor._lock:
            registrations = list(self.monitor.registrations)
        root = f"urn:pulumi:{self.stack}::{PROJECT}::pulumi:pulumi:Stack::{PROJECT}-{self.stack}"
        rendered = []
        for urn, typ, name, parent, custom in registrations:
            inputs = self.mocks.inputs.get((typ, name), {})
            resource_id = self.mocks.ids.get((typ, name)) if custom else None
            rendered.append(
                RenderedResource(
                    urn=urn,
                    type=typ,
                    name=name,
                    id=resource_id,
                    parent=None if parent in ("", root) else parent,
                    inputs=_plain(inputs),
                )
            )
        return sorted(rendered, key=lambda r: r.urn)

    def rendered(self) -> RenderedStack:
        """The session's result as a :class:`RenderedStack`."""
        return RenderedStack(stack=self.stack, config=self.config, resources=self.resources())


_SECRET_SIG = "4dabf18193072939515e22adb298388d"  # noqa: S105 the engine's secret marker
SECRET_PLACEHOLDER = "[secret]"  # noqa: S105 what is shown instead of a secret


def _plain(value: Any) -> Any:
    """Inputs as JSON-ready data; secret values are masked, never printed."""
    if isinstance(value, dict) and _SECRET_SIG in value:
        return SECRET_PLACEHOLDER
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, pulumi.Resource):
        return {"resourceRef": str(id(value))}
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)


def run_infra_program() -> None:
    """The Pulumi entry point of ``infra/``, exactly as ``pulumi up`` runs it."""
    import runpy  # noqa: PLC0415

    runpy.run_module("infra", run_name="__main__", alter_sys=False)


def render_in_process(stack: str, stacks_dir: Path | None = None) -> RenderedStack:
    """Render one stack in this process (see the module docstring about sessions)."""
    session = PlanSession(stack, stacks_dir)
    session.run(run_infra_program)
    return session.rendered()
