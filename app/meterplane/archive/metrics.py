"""Prometheus metrics of the archiver (same process-wide registry as ``core.metrics``)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

ROWS = Counter("meterplane_archive_rows", "Raw rows moved to the cold tier")
BYTES = Counter("meterplane_archive_bytes", "Parquet bytes written to the cold tier")
FAILURES = Counter("meterplane_archive_failures", "Archive runs that stopped on an error")
LAST_SUCCESS = Gauge(
    "meterplane_archive_last_success_timestamp_seconds",
    "When the last archive run completed (alert when it falls behind the schedule)",
)
