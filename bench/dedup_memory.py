"""Memory of the embedded aggregator's dedup set: bytes per remembered identity.

``serve`` drops a later copy of an event by remembering every (customerId, idempotencyKey)
it counted within ``METERPLANE_DEDUP_WINDOW_S`` (24 h by default), in memory. This counts
events through ``Aggregator._apply`` exactly as ``serve`` does, then measures (with
``tracemalloc``, plus what the native window reports of its own C allocations) what stays
allocated once the frames, the queued raw rows and the counters are gone: the set. The
native window (``_native.c``, what ``serve`` runs) is measured against the Python one
(``dedup.py``, the reference) in the same run: ``python_bytes_per_identity_*``. Two key
shapes: the demo's short keys, and 36-character UUIDs as many clients send.
``identities_per_gib`` and ``events_per_s_per_gib_24h`` turn that into sizing: how fast an
install may ingest, on average, per GiB kept for the set. ``evict_us_per_identity_*``:
forgetting a window's worth of expired identities, for two window sizes; equal figures
mean the work grows linearly with what is forgotten.
Run: ``python bench/dedup_memory.py [--quick]``.
"""

from __future__ import annotations

import argparse
import gc
import sys
import tempfile
import time
import tracemalloc
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import msgspec
from _common import emit

from meterplane.aggregate import aggregator, dedup
from meterplane.aggregate.aggregator import Aggregator, RawRows
from meterplane.core.catalog import load_catalog
from meterplane.core.model import TimeWindow, decode_events
from meterplane.core.timeutil import now_us
from meterplane.ingest.buffer import KIND_EVENTS, Frame
from meterplane.simulate import generate

GIB = 1 << 30


def _with_uuid_keys(body: bytes) -> bytes:
    batch = msgspec.json.decode(body)
    for event in batch["events"]:
        event["idempotencyKey"] = str(uuid.uuid4())
    return msgspec.json.encode(batch)


def bytes_per_identity(bodies: list[bytes], python: bool = False) -> float:
    """Bytes the dedup set holds per identity after counting ``bodies`` (with the Python
    window and counting path if ``python``)."""
    catalog = load_catalog()
    native = aggregator.core, dedup.core
    if python:
        aggregator.core = dedup.core = None
    with tempfile.TemporaryDirectory() as tmp:
        gc.collect()
        tracemalloc.start()
        agg = Aggregator(None, None, catalog, Path(tmp))  # type: ignore[arg-type]
        base = tracemalloc.get_traced_memory()[0]
        received = now_us()
        for i, body in enumerate(bodies):
            items = decode_events(body, received, TimeWindow())
            agg.offer(Frame(i * len(body), (i + 1) * len(body), KIND_EVENTS, received, body), items)
            del items
            agg._apply(agg._offered.popleft())  # as ``step`` takes an offered frame
        agg._raw = RawRows()  # the raw rows a checkpoint would have stored
        agg.book = None  # type: ignore[assignment] # the counters, not the set
        gc.collect()
        held = tracemalloc.get_traced_memory()[0] - base
        tracemalloc.stop()
        aggregator.core, dedup.core = native
        if not python:
            held += agg.dedup.nbytes()
        return held / len(agg.dedup)


def evict_us_per_identity(n: int) -> float:
    """Microseconds per identity to forget ``n`` expired ones, in 1,000-event frames."""
    with tempfile.TemporaryDirectory() as tmp:
        agg = Aggregator(None, None, load_catalog(), Path(tmp))  # type: ignore[arg-type]
        old = now_us() - 2 * agg.window_us
        for _ in range(n // 1000):
            agg.dedup.admit(["acme"] * 1000, [str(uuid.uuid4()) for _i in range(1000)], old)
        started = time.perf_counter()
        agg._evict_seen()
        elapsed = time.perf_counter() - started
        assert not agg.dedup
        return elapsed / n * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a run under 30 s")
    args = parser.parse_args()
    n = 50_000 if args.quick else 200_000
    traffic = generate(load_catalog(), now_us(), n_events=n, late_share=0.0)
    with_uuids = [_with_uuid_keys(b) for b in traffic.event_batches]
    demo = bytes_per_identity(traffic.event_batches)
    uuids = bytes_per_identity(with_uuids)
    python_demo = bytes_per_identity(traffic.event_batches, python=True)
    python_uuids = bytes_per_identity(with_uuids, python=True)
    small, large = (evict_us_per_identity(k * n) for k in (1, 4))
    emit(
        {
            "bench": "dedup_memory",
            "identities": n,
            "bytes_per_identity_demo_keys": round(demo),
            "bytes_per_identity_uuid_keys": round(uuids),
            "python_bytes_per_identity_demo_keys": round(python_demo),
            "python_bytes_per_identity_uuid_keys": round(python_uuids),
            "uuid_keys_ratio_to_python": round(uuids / python_uuids, 2),
            "identities_per_gib_uuid_keys": round(GIB / uuids),
            "events_per_s_per_gib_24h_uuid_keys": round(GIB / uuids / 86_400, 1),
            f"evict_us_per_identity_{n}": round(small, 3),
            f"evict_us_per_identity_{4 * n}": round(large, 3),
        }
    )


if __name__ == "__main__":
    main()
