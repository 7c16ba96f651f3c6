"""The embedded aggregator's dedup window: a copy within it is dropped, one after it counts
again (as on the Flink path, whose keyed state has the same TTL); forgetting is by arrival
and survives a restart."""

from __future__ import annotations

import time
from pathlib import Path

import msgspec

from meterplane.aggregate.dedup import DedupWindow
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
    while ("acme", key) in plane.aggregator.dedup:
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
        assert ("acme", "k3") in plane.aggregator.dedup
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
        dedup = plane.aggregator.dedup
        assert len(dedup) == 2
        arrivals = dedup.arrivals()
        assert [ident for _, idents in arrivals for ident in idents] == [
            ("acme", "a1"),
            ("acme", "a2"),
        ]
        assert all(t <= now_us() for t, _ in arrivals)
        _send(Api(plane), "a1")  # still within the window after the restart
        assert _api_calls(plane) == 2
    finally:
        plane.stop()


def test_forgetting_a_large_window_never_scans_from_the_front(tmp_path: Path) -> None:
    """Eviction deletes by key, so the work per forgotten identity does not grow with how
    many were forgotten before it (taking the dict's first key again and again did)."""
    window = DedupWindow()
    old = now_us() - 7200 * 1_000_000
    recent = now_us()
    for frame in range(200):
        keys = [f"old-{frame}-{i}" for i in range(1000)]
        assert window.admit(["acme"] * 1000, keys, old) == list(range(1000))
    window.admit(["acme", "globex"], ["recent", "recent"], recent)
    scanned = []

    class Counting(set):  # type: ignore[type-arg]
        def __iter__(self):  # type: ignore[no-untyped-def]
            scanned.append(1)
            return super().__iter__()

    window._by_customer["acme"] = Counting(window._by_customer["acme"])
    window.forget_before(recent)
    assert len(window) == 2
    assert window.arrivals() == [(recent, [("acme", "recent"), ("globex", "recent")])]
    assert ("acme", "recent") in window
    assert ("acme", "old-0-0") not in window
    assert scanned == []  # not one scan from the front


def test_the_window_admits_first_copies_and_forgets_customers_it_no_longer_holds() -> None:
    window = DedupWindow()
    assert window.admit(["a", "a", "b", "a"], ["k1", "k2", "k1", "k1"], 10) == [0, 1, 2]
    assert window.admit(["b", "c"], ["k1", "k1"], 20) == [1]  # b's k1 is known: a copy
    assert len(window) == 4
    window.forget_before(11)
    assert len(window) == 1
    assert window._by_customer == {"c": {"k1"}}  # no empty set left per customer
    assert window.admit(["a"], ["k1"], 30) == [0]  # forgotten: counts again
    window.load(["d", "d", "e", "d"], ["x", "y", "x", "x"], [40, 40, 41, 41])  # a restart's rows
    assert window.arrivals()[-2:] == [(40, [("d", "x"), ("d", "y")]), (41, [("e", "x")])]
