"""``python -m meterplane.plan._render STACK``: render one stack, print its JSON.

Runs in its own process so Pulumi's process-wide runtime state starts clean. On failure
the last line of stderr is the reason (``stack 'x': meterplane:zones: ...``) and the exit
code is 1.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    """Render the stack named on the command line to stdout as JSON."""
    parser = argparse.ArgumentParser(prog="python -m meterplane.plan._render")
    parser.add_argument("stack")
    parser.add_argument("--stacks-dir", type=Path, default=None)
    args = parser.parse_args(argv)
    # The SDK logs every mocked registration at debug; keep stderr for the one error line.
    logging.getLogger("pulumi").setLevel(logging.ERROR)
    from infra.config import StackConfigError  # noqa: PLC0415 after logging setup
    from meterplane.plan._engine import render_in_process  # noqa: PLC0415
    from meterplane.plan.model import PlanError  # noqa: PLC0415

    try:
        rendered = render_in_process(args.stack, args.stacks_dir)
    except (PlanError, StackConfigError) as exc:
        message = str(exc)
        if isinstance(exc, StackConfigError):
            message = f"stack {args.stack!r}: invalid config: {exc}"
        print(message, file=sys.stderr)
        return 1
    json.dump(rendered.to_json(), sys.stdout, separators=(",", ":"))
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
