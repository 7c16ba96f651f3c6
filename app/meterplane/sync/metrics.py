"""Prometheus metrics of the sync agent (served on ``/metrics`` of ``serve`` or of the
standalone agent's health port)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

LAG = Gauge(
    "meterplane_sync_lag_seconds",
    "inbound: seconds since the change feed was last read up to date; "
    "outbound: age of the oldest rollup or event not yet acknowledged (0 when none)",
    ["direction"],
)
LAST_SUCCESS = Gauge(
    "meterplane_sync_last_success_timestamp_seconds",
    "Unix time of the last successful exchange, by operation",
    ["operation"],
)
FAILURES = Counter(
    "meterplane_sync_failures", "Failed exchanges with the control plane", ["operation"]
)
OUTBOX = Gauge("meterplane_sync_outbox_pending", "Rollups and events waiting to be sent")
CHANGES = Counter("meterplane_sync_changes", "Change records processed, by outcome", ["outcome"])
SENT = Counter("meterplane_sync_sent", "Items acknowledged by the control plane, by kind", ["kind"])
REFUSED = Counter(
    "meterplane_sync_payloads_refused",
    "Payloads the aggregates-only guard refused to send (must stay 0)",
)
CURSOR = Gauge("meterplane_sync_cursor_seq", "Sequence number of the last applied change")
COUNTERS = Gauge(
    "meterplane_sync_counters_seen",
    "Customer-wide counters (customer, feature, period) in the last read of the counter source",
)
