"""``meterplane serve``: the whole data plane in one process on embedded defaults."""

from __future__ import annotations

import argparse
import gc
import signal
from pathlib import Path

from meterplane.archive.schedule import start_archiver
from meterplane.commands._common import (
    add_data_dir,
    add_http,
    guarded,
    settings_from,
    setup_logging,
)
from meterplane.core.settings import Settings
from meterplane.http.app import create_app
from meterplane.http.server import run_http
from meterplane.plane import EmbeddedPlane
from meterplane.sync.embedded import initial_catalog, start_embedded_sync


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_data_dir(parser)
    add_http(parser)
    parser.add_argument("--catalog", type=Path, help="catalog file (METERPLANE_CATALOG)")


def serve(settings: Settings) -> int:
    """Run until SIGINT/SIGTERM; in-flight batches finish, then state is checkpointed."""
    setup_logging(settings.log_level)
    plane = EmbeddedPlane(settings, initial_catalog(settings))
    plane.start()
    sync = archiver = None
    try:
        archiver = start_archiver(plane.engine, settings)  # the plane's one chdb session
        sync = start_embedded_sync(settings, plane)  # None unless METERPLANE_CONTROL_PLANE_URL
        app = create_app(
            plane.buffer,
            plane.decider,
            settings.api_keys,
            max_body_bytes=settings.max_body_bytes,
            lateness_days=settings.lateness_days,
        )
        if sync is not None:
            sync.bind_auth(app.state.auth)
        # uvicorn drains in-flight requests on SIGTERM/SIGINT, then re-raises the signal with
        # the handlers it found installed. Install no-op ones so that re-raise returns here
        # and the aggregator can checkpoint before the process exits.
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: None)
        # Everything built so far (catalog, recovered counters, the dedup set) lives as long
        # as the process: keep the cyclic GC from walking it again and again, which shows
        # up as pauses of milliseconds in check latency.
        gc.freeze()
        run_http(app, settings)
    finally:
        if archiver is not None:
            archiver.stop()
        if sync is not None:
            sync.stop()
        plane.stop()
    return 0


def run(args: argparse.Namespace) -> int:
    def go() -> int:
        settings = settings_from(args)
        settings.require_api_keys()
        return serve(settings)

    return guarded(go)
