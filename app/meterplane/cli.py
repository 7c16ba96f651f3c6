"""The ``meterplane`` command line.

Each subcommand lives in its own module exposing ``add_arguments(parser)`` and
``run(args) -> int``. Modules are imported only when their subcommand runs, so
``meterplane ingest`` never pays for importing Pulumi and ``meterplane plan`` never
starts chdb.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from typing import Protocol

from meterplane import __version__


class _Command(Protocol):
    def add_arguments(self, parser: argparse.ArgumentParser) -> None: ...
    def run(self, args: argparse.Namespace) -> int: ...


# name -> (module, one-line help). Order is the order shown in --help.
COMMANDS: dict[str, tuple[str, str]] = {
    "serve": ("meterplane.commands.serve", "run the whole data plane in one process"),
    "demo": ("meterplane.commands.demo", "start an embedded plane, drive traffic, print results"),
    "aggregate": (
        "meterplane.commands.aggregate",
        "the aggregation job (PyFlink) in its own interpreter",
    ),
    "rebuild": ("meterplane.commands.rebuild", "recompute counters from raw events; report drift"),
    "ingest": ("meterplane.commands.ingest", "ingest API with Kafka as the durable buffer"),
    "entitlements": ("meterplane.commands.entitlements", "checks from the Kafka counters stream"),
    "load-clickhouse": ("meterplane.commands.load_clickhouse", "Kafka -> ClickHouse raw events"),
    "archive": ("meterplane.commands.archive", "move old raw events to the cold tier, once"),
    "plan": ("meterplane.commands.plan", "render a customer stack offline (Pulumi mocks)"),
    "policy-check": ("meterplane.commands.policy_check", "run the policy pack over stacks"),
    "rollout": ("meterplane.commands.rollout", "plan and run upgrade waves over stacks"),
    "migrate": ("meterplane.commands.migrate", "apply pending ClickHouse schema migrations"),
    "sync": ("meterplane.commands.sync", "sync agent: apply control-plane changes, send rollups"),
    "control-plane": ("meterplane.commands.controlplane", "reference control plane (demo, tests)"),
}


def _top_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="meterplane",
        description="Bring-your-own-cloud usage-metering data plane.",
    )
    parser.add_argument("--version", action="version", version=f"meterplane {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_, help_text) in COMMANDS.items():
        sub.add_parser(name, help=help_text, add_help=False)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Dispatch to a subcommand; returns the process exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] not in COMMANDS:
        parser = _top_parser()
        if not args:
            parser.print_help()
            return 2
        parser.parse_args(args)  # prints --version/--help, or the "invalid choice" error
        return 2
    name, rest = args[0], args[1:]
    module_name, help_text = COMMANDS[name]
    command: _Command = importlib.import_module(module_name)
    parser = argparse.ArgumentParser(prog=f"meterplane {name}", description=help_text)
    command.add_arguments(parser)
    return command.run(parser.parse_args(rest))
