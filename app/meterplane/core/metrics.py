"""Prometheus metrics shared by the services (one registry per process)."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import REGISTRY, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

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
PAST_RETIRED = Counter(
    "meterplane_items_past_retired_periods",
    "Counts that fell in a period already retired (final, stored, out of memory): not "
    "counted until `meterplane rebuild --apply`",
)
AGGREGATED = Counter("meterplane_items_aggregated", "Items applied to counters")
BACKLOG = Gauge("meterplane_buffer_backlog_bytes", "Acked bytes the aggregator has not processed")
CHECKPOINT_SECONDS = Histogram(
    "meterplane_checkpoint_seconds", "Time to store rows, counters and the log position"
)


class DecisionCounts:
    """Entitlement decisions served, by outcome, as ``meterplane_entitlement_checks_total``.

    Plain integers, bumped by the one thread that serves HTTP and read at scrape time: a
    prometheus ``Counter`` takes a lock on every increment, which cost more than the
    decision itself (``bench/check_path.py``: 3 µs of a 6 µs check, warm).
    """

    __slots__ = ("denied", "granted")

    def __init__(self) -> None:
        self.granted = 0
        self.denied = 0

    def record(self, granted: bool) -> None:
        """Count one decision."""
        if granted:
            self.granted += 1
        else:
            self.denied += 1


CHECKS = DecisionCounts()


class _DecisionCollector(Collector):
    def collect(self) -> Iterator[CounterMetricFamily]:
        family = CounterMetricFamily(
            "meterplane_entitlement_checks", "Entitlement decisions served", labels=["granted"]
        )
        family.add_metric(["true"], CHECKS.granted)
        family.add_metric(["false"], CHECKS.denied)
        yield family


REGISTRY.register(_DecisionCollector())
