"""``meterplane policy-check [STACK ...]``: run the policy pack over rendered stacks.

Renders each stack offline (the same rendering as ``meterplane plan``), runs every policy
of the CrossGuard pack at the stack's level (mandatory for prod, advisory for dev and
staging, overridable with ``--config``), prints a summary per stack and optionally writes
a JSON, JUnit or SARIF report for CI. Exit status: 0 when no stack has a mandatory
violation, 1 when one has (or cannot be rendered), 2 for a usage or configuration error.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from meterplane.plan import PlanError, list_stacks
from meterplane.policycheck import RENDERERS, affected_stacks, check_rendered, check_stacks
from meterplane.policycheck.runner import load_plan
from policies.core import PolicyConfigError
from policies.registry import PackConfig


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare the subcommand's arguments."""
    parser.add_argument("stacks", nargs="*", metavar="STACK", help="stacks to check (default: all)")
    parser.add_argument(
        "--stacks-dir", type=Path, default=None, help="directory of Pulumi.<stack>.yaml files"
    )
    parser.add_argument(
        "--config",
        type=Path,
        default=None,
        metavar="FILE",
        help="policy pack configuration (the --policy-pack-config JSON shape)",
    )
    parser.add_argument(
        "--format", choices=sorted(RENDERERS), default="text", help="report format (default text)"
    )
    parser.add_argument(
        "--output", type=Path, default=None, metavar="FILE", help="write the report to FILE"
    )
    parser.add_argument(
        "--changed-files",
        type=Path,
        default=None,
        metavar="FILE",
        help="check only the stacks these changed paths affect (one path per line, "
        "as printed by git diff --name-only)",
    )
    parser.add_argument(
        "--plan",
        type=Path,
        action="append",
        default=[],
        metavar="FILE",
        help="check an already-rendered stack (meterplane plan STACK --json output) "
        "instead of rendering; repeatable",
    )
    parser.add_argument("--jobs", type=int, default=2, help="stacks rendered in parallel")


def _select(args: argparse.Namespace) -> list[str]:
    if args.changed_files is not None:
        if args.stacks:
            raise PolicyConfigError("give either STACK names or --changed-files, not both")
        changed = args.changed_files.read_text(encoding="utf-8").splitlines()
        selection = affected_stacks(changed, args.stacks_dir)
        print(f"policy-check: {selection.reason}: {', '.join(selection.stacks) or 'no stack'}")
        return selection.stacks
    if args.stacks or args.plan:
        return list(args.stacks)
    return list_stacks(args.stacks_dir)


def run(args: argparse.Namespace) -> int:
    """Check the stacks; 1 if any has a mandatory violation or fails to render."""
    try:
        config = PackConfig.load(args.config) if args.config else PackConfig()
        stacks = _select(args)
        rendered = [load_plan(path, args.stacks_dir) for path in args.plan]
    except (PolicyConfigError, OSError, PlanError) as error:
        print(f"policy-check: {error}", file=sys.stderr)
        return 2
    results = [check_rendered(stack, config) for stack in rendered]
    if stacks or not rendered:
        results += check_stacks(stacks, config, args.stacks_dir, jobs=args.jobs)
    summary = RENDERERS["text"](results)
    report = RENDERERS[args.format](results)
    if args.output is not None:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(report, encoding="utf-8")
        sys.stdout.write(summary)
    else:
        sys.stdout.write(report)
    return 1 if any(result.blocked for result in results) else 0
