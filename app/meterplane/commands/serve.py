"""``meterplane serve``: the whole data plane in one process on embedded defaults."""

from __future__ import annotations

import argparse
import gc
import signal
import sys
from pathlib import Path

from meterplane.archive.schedule import start_archiver
from meterplane.commands._common import (
    add_data_dir,
    add_http,
    guarded,
    settings_from,
    setup_logging,
)
from meterplane.core.catalog import DEFAULT_CATALOG
from meterplane.core.settings import Settings, environment_help
from meterplane.http.app import create_app
from meterplane.http.server import run_http
from meterplane.plane import CatalogWatcher, EmbeddedPlane
from meterplane.sync.embedded import initial_catalog, start_embedded_sync


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_data_dir(parser)
    add_http(parser)
    parser.add_argument("--catalog", type=Path, help="catalog file (METERPLANE_CATALOG)")
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = environment_help()


# How long a thread may hold the interpreter lock while another waits for it. CPython's
# default, 5 ms, let the aggregator (pure Python for milliseconds at a stretch) hold the
# request thread off long enough that acks and fsync callbacks queued up behind it: in
# ``bench/ingest.py``-style runs the ack rate then fell into a slow mode, 120,000 instead
# of 185,000 events/s, in about half of the runs. At 0.5 ms it stayed at 187,000–201,000.
SWITCH_INTERVAL_S = 0.0005


def tune_interpreter() -> None:
    """Before serving: GC and lock settings for a long-lived, latency-bound process."""
    # Everything built so far (catalog, recovered counters, the dedup set) lives as long as
    # the process: keep the cyclic GC from walking it again and again, which shows up as
    # pauses of milliseconds in check latency.
    gc.freeze()
    sys.setswitchinterval(SWITCH_INTERVAL_S)


def serve(settings: Settings) -> int:
    """Run until SIGINT/SIGTERM; in-flight batches finish, then state is checkpointed."""
    setup_logging(settings.log_level)
    plane = EmbeddedPlane(settings, initial_catalog(settings))
    plane.start()
    sync = archiver = watcher = None
    try:
        archiver = start_archiver(plane.engine, settings)  # the plane's one chdb session
        sync = start_embedded_sync(settings, plane)  # None unless METERPLANE_CONTROL_PLANE_URL
        if sync is None:  # with syncing on, the agent owns the catalog; else the file does
            watcher = CatalogWatcher(settings.catalog or DEFAULT_CATALOG, plane.catalog).start()
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
        tune_interpreter()
        run_http(app, settings)
    finally:
        if watcher is not None:
            watcher.stop()
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
