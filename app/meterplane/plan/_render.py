"""``python -m meterplane.plan._render STACK``: render one stack, print its JSON.

Runs in its own process so Pulumi's process-wide runtime state starts clean. On failure
the last line of stderr is the reason (``stack 'x': invalid config: meterplane:zones:
...``) and the exit code is 1. ``meterplane plan`` calls :func:`render_here` directly,
since a CLI run is already a fresh process.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from meterplane.plan.model import PlanError, RenderedStack
from meterplane.plan.stackfiles import project_dir


def use_bytecode_cache() -> None:
    """Cache compiled provider SDKs under the project's ``.cache/`` when run from a checkout.

    The SDKs are ~100 MB of Python; with ``PYTHONDONTWRITEBYTECODE`` set (as in this
    repository's shells) every render would recompile them, which triples render time.
    """
    root = project_dir()
    if root is not None and sys.pycache_prefix is None:
        sys.pycache_prefix = str(root / ".cache" / "pycache")
        sys.dont_write_bytecode = False


def render_here(stack: str, stacks_dir: Path | None = None) -> RenderedStack:
    """Render in this process; config errors become a :class:`PlanError` naming the key."""
    use_bytecode_cache()
    # The SDK logs every mocked registration at debug; keep stderr for the one error line.
    logging.getLogger("pulumi").setLevel(logging.ERROR)
    from infra.config import StackConfigError  # noqa: PLC0415 after the cache is set up
    from meterplane.plan._engine import render_in_process  # noqa: PLC0415

    try:
        return render_in_process(stack, stacks_dir)
    except StackConfigError as exc:
        raise PlanError(f"stack {stack!r}: invalid config: {exc}") from None


def main(argv: list[str] | None = None) -> int:
    """Render the stack named on the command line to stdout as JSON."""
    parser = argparse.ArgumentParser(prog="python -m meterplane.plan._render")
    parser.add_argument("stack")
    parser.add_argument("--stacks-dir", type=Path, default=None)
    args = parser.parse_args(argv)
    try:
        rendered = render_here(args.stack, args.stacks_dir)
    except PlanError as exc:
        print(exc, file=sys.stderr)
        return 1
    json.dump(rendered.to_json(), sys.stdout, separators=(",", ":"))
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
