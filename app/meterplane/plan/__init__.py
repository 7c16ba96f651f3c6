"""Offline rendering of a customer stack: the real ``infra/`` program under Pulumi mocks.

No CLI, no credentials, no network: :func:`render_stack` runs the program in a fresh
Python subprocess (``python -m meterplane.plan._render STACK``) with mocks that fill
computed outputs with realistic values, and returns every resource with the inputs the
engine would receive. ``meterplane plan``, the policy check and the tests all use it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from meterplane.plan.model import PlanError, RenderedResource, RenderedStack
from meterplane.plan.stackfiles import list_stacks, meterplane_config, read_stack_file

__all__ = [
    "PlanError",
    "RenderedResource",
    "RenderedStack",
    "list_stacks",
    "render_stack",
]

RENDER_TIMEOUT_S = 120


def render_stack(stack: str, stacks_dir: Path | None = None) -> RenderedStack:
    """Render ``stacks/Pulumi.<stack>.yaml`` offline and return what it would declare.

    Raises :class:`PlanError` when the stack file is missing or invalid (the message names
    the config key path) or the program fails.
    """
    config = meterplane_config(read_stack_file(stack, stacks_dir))
    argv = [sys.executable, "-m", "meterplane.plan._render", stack]
    if stacks_dir is not None:
        argv += ["--stacks-dir", str(stacks_dir)]
    # The child must never reach a real engine or cloud, whatever this shell exports.
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PULUMI_", "AWS_", "GOOGLE_", "ARM_", "AZURE_"))
    }
    env["PULUMI_SKIP_UPDATE_CHECK"] = "true"
    try:
        done = subprocess.run(
            argv, capture_output=True, text=True, env=env, timeout=RENDER_TIMEOUT_S, check=False
        )
    except subprocess.TimeoutExpired:
        raise PlanError(
            f"stack {stack!r}: rendering took longer than {RENDER_TIMEOUT_S} s"
        ) from None
    if done.returncode != 0:
        reason = done.stderr.strip().splitlines()[-1] if done.stderr.strip() else "no output"
        raise PlanError(reason)
    data = json.loads(done.stdout)
    return RenderedStack(
        stack=data["stack"],
        config=config,
        resources=[RenderedResource.from_json(r) for r in data["resources"]],
    )
