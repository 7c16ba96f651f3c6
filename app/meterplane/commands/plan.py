"""``meterplane plan STACK [--json]``: what a stack would build, offline (DESIGN.md 3.5).

Renders the real ``infra/`` program under Pulumi mocks (no credentials, no network) and
prints either a readable tree of components and resources or, with ``--json``, the
``{"stack", "resources"}`` contract that the policy check and reviewers' tools read.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

from meterplane.plan import PlanError, RenderedResource, RenderedStack

# Inputs worth a glance in the tree, per kind of resource (the JSON has everything).
_SUMMARY_KEYS = ("replicas", "partitions", "version", "chart", "bucket", "location", "region")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``STACK`` and ``--json``."""
    parser.add_argument("stack", metavar="STACK", help="name of stacks/Pulumi.<STACK>.yaml")
    parser.add_argument(
        "--json", action="store_true", help="print the JSON contract instead of a tree"
    )
    parser.add_argument(
        "--stacks-dir", type=Path, default=None, help="directory of stack files (default: stacks/)"
    )


def run(args: argparse.Namespace) -> int:
    """Render the stack; exit 1 with one line naming the problem if it is invalid."""
    # A CLI run is a fresh process, so it renders in-process (one interpreter start
    # instead of two); library callers use render_stack, which isolates each stack.
    from meterplane.plan._render import render_here  # noqa: PLC0415

    try:
        rendered = render_here(args.stack, args.stacks_dir)
    except PlanError as exc:
        print(f"meterplane plan: {exc}", file=sys.stderr)
        return 1
    if args.json:
        json.dump(rendered.to_json(), sys.stdout, indent=2, sort_keys=False)
        sys.stdout.write("\n")
        return 0
    _print_tree(rendered)
    return 0


def _label(resource: RenderedResource) -> str:
    detail = _summary(resource.inputs)
    kind = resource.type
    if kind.startswith("kubernetes:"):
        metadata = resource.inputs.get("metadata") or {}
        where = "/".join(p for p in (metadata.get("namespace"), metadata.get("name")) if p)
        detail = f"{where} {detail}".strip()
    text = f"[bold]{resource.name}[/bold] [dim]{kind}[/dim]"
    return f"{text}  {detail}" if detail else text


def _summary(inputs: dict[str, Any]) -> str:
    spec = inputs.get("spec") if isinstance(inputs.get("spec"), dict) else {}
    parts = []
    for key in _SUMMARY_KEYS:
        value = inputs.get(key, spec.get(key) if spec else None)
        if isinstance(value, str | int | float) and not isinstance(value, bool):
            shown = int(value) if isinstance(value, float) and value.is_integer() else value
            parts.append(f"{key}={shown}")
    return " ".join(parts)


def _print_tree(rendered: RenderedStack) -> None:
    from rich.console import Console  # noqa: PLC0415 only the tree view needs rich
    from rich.tree import Tree  # noqa: PLC0415

    children: dict[str | None, list[RenderedResource]] = defaultdict(list)
    for resource in rendered.resources:
        children[resource.parent].append(resource)
    cfg = rendered.config
    root = Tree(
        f"[bold]{rendered.stack}[/bold]  cloud={cfg.get('cloud')} region={cfg.get('region')} "
        f"zones={cfg.get('zones')} throughput={cfg.get('throughput')}/s "
        f"— {len(rendered.resources)} resources"
    )

    def add(node: Tree, parent: str | None) -> None:
        for resource in children.get(parent, []):
            add(node.add(_label(resource)), resource.urn)

    add(root, None)
    Console(soft_wrap=False).print(root)
