"""Serving the API with uvicorn, the same way for ``serve`` and the Kafka ingest service."""

from __future__ import annotations

import uvicorn
from fastapi import FastAPI

from meterplane.core.settings import Settings
from meterplane.http.app import asgi


def run_http(app: FastAPI, settings: Settings) -> None:
    """Serve until SIGTERM/SIGINT; in-flight requests get 25 s to finish (the drain)."""
    uvicorn.run(
        asgi(app),
        host=settings.http_host,
        port=settings.http_port,
        log_level=settings.log_level.lower(),
        access_log=False,
        timeout_graceful_shutdown=25,
        # Clients reach the data plane through a Kubernetes Service, not a proxy that sets
        # X-Forwarded-*; and nothing reads Server/Date. Both cost time on every request.
        proxy_headers=False,
        server_header=False,
        date_header=False,
    )
