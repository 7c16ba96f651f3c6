"""``meterplane ingest``: the ingest API with Kafka as the durable buffer (production)."""

from __future__ import annotations

import argparse

from meterplane.commands._common import add_http, guarded, settings_from, setup_logging
from meterplane.kafka.service import add_kafka_arguments, run_service


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_http(parser)
    add_kafka_arguments(parser)


def run_kafka_service(args: argparse.Namespace, *, ingest: bool) -> int:
    """``ingest`` (ingest=True) or ``entitlements``: the same service, with or without
    the ingest routes' Kafka buffer."""

    def go() -> int:
        settings = settings_from(args)
        settings.require_api_keys()
        setup_logging(settings.log_level)
        return run_service(settings, args, ingest=ingest)

    return guarded(go)


def run(args: argparse.Namespace) -> int:
    return run_kafka_service(args, ingest=True)
