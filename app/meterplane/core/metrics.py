"""Prometheus metrics shared by the services (one registry per process)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

ITEMS_ACCEPTED = Counter(
    "meterplane_items_accepted", "Events and usage reports acked (durable)", ["kind"]
)
BATCHES_REJECTED = Counter(
    "meterplane_batches_rejected", "Batches refused, by HTTP status", ["status"]
)
DUPLICATES = Counter("meterplane_duplicates_dropped", "Later copies of an identity, dropped")
UNMETERED = Counter(
    "meterplane_items_unmetered",
    "Stored items that could not count (missing or non-numeric field, report on a metered feature)",
)
AGGREGATED = Counter("meterplane_items_aggregated", "Items applied to counters")
BACKLOG = Gauge("meterplane_buffer_backlog_bytes", "Acked bytes the aggregator has not processed")
CHECKPOINT_SECONDS = Histogram(
    "meterplane_checkpoint_seconds", "Time to store rows, counters and the log position"
)
CHECKS = Counter("meterplane_entitlement_checks", "Entitlement decisions served", ["granted"])
