"""``meterplane entitlements``: entitlement checks kept current from the counters topic."""

from __future__ import annotations

import argparse

from meterplane.commands.ingest import add_arguments, run_kafka_service

__all__ = ["add_arguments", "run"]  # the same arguments as ``ingest``


def run(args: argparse.Namespace) -> int:
    return run_kafka_service(args, ingest=False)
