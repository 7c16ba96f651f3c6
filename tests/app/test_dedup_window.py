"""The embedded aggregator's dedup window: a copy within it is dropped, one after it counts
again (as on the Flink path, whose keyed state has the same TTL); forgetting is by arrival
and survives a restart."""

from __future__ import annotations

import time
from pathlib import Path

import msgspec

from meterplane.aggregate.aggregator import Aggregator
from meterplane.core.catalog import load_catalog
from meterplane.core.timeutil import now_us
from meterplane.plane import EmbeddedPlane
from tests.app.conftest import Api, make_plane

WINDOW_S = 0.6


def _send(api: Api, *keys: str) -> None:
    events = [{"customerId": "acme", "eventName": "api_call", "idempotencyKey": k} for k in keys]
    r = api.request("POST", "/api/v1/events", content=msgspec.json.encode({"events": events}))
    assert r.status_code == 202, r.text
    api.settle()


def _api_calls(plane: EmbeddedPlane) -> int:
    usage = plane.decider.check("acme", "api-calls", 0).currentUsage
    assert isinstance(usage, int)
    return usage


def _wait_evicted(plane: EmbeddedPlane, key: str) -> None:
    """Until the aggregator's checkpoints have forgotten ``key`` (by its own clock)."""
    deadline = time.monotonic() + 10
    while ("acme", key) in plane.aggregator.seen:
        assert time.monotonic() < deadline, "identity never forgotten"
        time.sleep(0.05)


def test_a_copy_within_the_window_is_dropped_and_one_after_it_counts(tmp_path: Path) -> None:
    plane = make_plane(tmp_path / "data", dedup_window_s=WINDOW_S)
    try:
        api = Api(plane)
        _send(api, "k1", "k2")
        _send(api, "k1")  # within the window: a duplicate
        assert _api_calls(plane) == 2
        time.sleep(WINDOW_S)
        _send(api, "k3")  # new data: the next checkpoint forgets what arrived before
        _wait_evicted(plane, "k1")
        assert ("acme", "k3") in plane.aggregator.seen
        _send(api, "k1")  # after the window: counts again, by design
        assert _api_calls(plane) == 4
    finally:
        plane.stop()


def test_after_a_restart_the_window_is_rebuilt_in_arrival_order(tmp_path: Path) -> None:
    plane = make_plane(tmp_path / "data", dedup_window_s=3600)
    _send(Api(plane), "a1", "a2")
    plane.stop()
    plane = make_plane(tmp_path / "data", dedup_window_s=3600)
    try:
        seen, arrivals = plane.aggregator.seen, plane.aggregator._arrivals
        assert set(seen) == {("acme", "a1"), ("acme", "a2")}
        assert [ident for _, idents in arrivals for ident in idents] == list(seen)
        assert all(t <= now_us() for t, _ in arrivals)
        _send(Api(plane), "a1")  # still within the window after the restart
        assert _api_calls(plane) == 2
    finally:
        plane.stop()


def test_forgetting_a_large_window_never_scans_from_the_front(tmp_path: Path) -> None:
    """Eviction deletes by key, so the work per forgotten identity does not grow with how
    many were forgotten before it (taking the dict's first key again and again did)."""
    agg = Aggregator(None, None, load_catalog(), tmp_path, dedup_window_s=3600)  # type: ignore[arg-type]
    old = now_us() - 7200 * 1_000_000
    recent = now_us()
    for frame in range(200):
        idents = [("acme", f"old-{frame}-{i}") for i in range(1000)]
        agg.seen.update(dict.fromkeys(idents, old))
        agg._arrivals.append((old, idents))
    agg.seen[("acme", "recent")] = recent
    agg._arrivals.append((recent, [("acme", "recent")]))
    scanned = []

    class Counting(dict):  # type: ignore[type-arg]
        def __iter__(self):  # type: ignore[no-untyped-def]
            scanned.append(1)
            return super().__iter__()

    agg.seen = Counting(agg.seen)
    agg._evict_seen()
    assert dict(agg.seen) == {("acme", "recent"): recent}
    assert [t for t, _ in agg._arrivals] == [recent]
    assert scanned == []  # not one scan from the front
