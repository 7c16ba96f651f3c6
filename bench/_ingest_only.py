"""A second reference point for ``bench/ingest.py``: ``serve``'s HTTP ingest with nothing
counting behind it.

The same plane, app and uvicorn configuration as ``meterplane serve`` (settings from the
same ``METERPLANE_*`` variables), except that the aggregator is never started: batches are
decoded, validated, appended and fsync'd, then acked, and nothing reads the log. Set
beside the full ``serve`` in the same run, it shows how much of the ack rate counting in
the same process takes. Not a mode of the product. Run: ``python bench/_ingest_only.py``.
"""

from __future__ import annotations

from meterplane.commands.serve import tune_interpreter
from meterplane.core.settings import load_settings
from meterplane.http.app import create_app
from meterplane.http.server import run_http
from meterplane.plane import EmbeddedPlane


def main() -> None:
    settings = load_settings()
    plane = EmbeddedPlane(settings)  # not started: no aggregator thread
    # Ingest offers its frames (and decoded batches) to the aggregator, which drops each once
    # applied; with no aggregator they would pile up (and slow the cyclic GC), so keep none.
    plane.aggregator.offer = lambda frame, items=None: None  # type: ignore[method-assign]
    app = create_app(plane.buffer, plane.decider, settings.api_keys)
    tune_interpreter()  # as ``serve`` does before serving
    try:
        run_http(app, settings)
    finally:
        plane.log.close()
        plane.engine.close()


if __name__ == "__main__":
    main()
