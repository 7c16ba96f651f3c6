"""The aggregator's native core (``aggregate/_native.c``) against the Python reference path:
the same frames, in every JSON form a client may send, must leave the same counters, the
same dedup window and the same raw rows (payloads: the event's JSON as received, which
decodes to the same event)."""

from __future__ import annotations

import json
import random
import re
import threading
from datetime import UTC, datetime, timedelta
from fractions import Fraction
from pathlib import Path
from typing import Any

import msgspec
import pytest

from meterplane.aggregate import aggregator as aggregator_module
from meterplane.aggregate import dedup as dedup_module
from meterplane.aggregate.aggregator import Aggregator
from meterplane.aggregate.dedup import DedupWindow, NativeDedupWindow
from meterplane.aggregate.native import core
from meterplane.core.catalog import load_catalog
from meterplane.core.model import EventBatch
from meterplane.core.timeutil import EPOCH, ONE_US
from meterplane.ingest.buffer import KIND_EVENTS, KIND_USAGE, Frame
from meterplane.simulate import generate
from tests.app.conftest import Api, make_plane

PLAIN_RFC3339 = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,6})?(Z|[+-]\d\d:\d\d)")
NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
CUSTOMERS = ["acme", "globex", "initech", 'quo"te', "ünï", "\\back", "𝄞clef"]
KEYS = ["k", "k\nnl", "ключ", "𝄞", 'q"', "tab\t", "x" * 200]
EVENTS = [
    ("api_call", lambda r: {"region": r.choice(["us", "eu", "ap"])}),
    ("completion", lambda r: {"tokens": r.randint(1, 4000), "latency_ms": r.random() * 900}),
    ("login", lambda r: {"user": f"u{r.randint(0, 40)}"}),
    ("storage_snapshot", lambda r: {"gb": r.choice([1, 2.5, 900, 7])}),
    ("unmetered", lambda r: {}),
]


def _stamp(r: random.Random, t: datetime) -> str | None:
    """A timestamp in one of the forms msgspec accepts (or none at all)."""
    form = r.randrange(9)
    if form == 0:
        return None
    offset = timedelta(minutes=r.choice([0, 60, -330, 840, -720]))
    local = (t + offset).replace(tzinfo=None)
    digits = r.choice([0, 1, 3, 6, 7, 9])
    base = local.strftime("%Y-%m-%dT%H:%M:%S")
    frac = f"{local.microsecond:06d}{r.randrange(1000):03d}"[:digits]
    text = base + (f".{frac}" if digits else "")
    sign = "-" if offset < timedelta(0) else "+"
    hhmm = divmod(abs(int(offset.total_seconds())) // 60, 60)
    suffix = "Z" if not offset and r.random() < 0.6 else f"{sign}{hhmm[0]:02d}:{hhmm[1]:02d}"
    if form == 1:
        return text.replace("T", " ") + suffix  # forms the scan leaves to msgspec
    if form == 2:
        return text.lower() + suffix.lower()
    if form == 3:
        return text + suffix.replace(":", "")
    return text + suffix


def _event(r: random.Random, i: int) -> dict[str, Any]:
    name, dims = r.choice(EVENTS)
    ev: dict[str, Any] = {
        "customerId": r.choice(CUSTOMERS),
        "eventName": name,
        "idempotencyKey": f"{r.choice(KEYS)}-{r.randrange(60)}",
    }
    t = NOW - timedelta(microseconds=r.randrange(40 * 86_400_000_000))
    if (stamp := _stamp(r, t)) is not None or r.random() < 0.3:
        ev["timestamp"] = stamp
    if r.random() < 0.7:
        ev["dimensions"] = dims(r)
    if r.random() < 0.3:
        ev["resourceId"] = r.choice([None, "r-1", "r-ü", 'r"2'])
    items = list(ev.items())
    r.shuffle(items)  # any field order
    return dict(items)


def _body(r: random.Random, events: list[dict[str, Any]]) -> bytes:
    """The batch in one of the JSON forms a client may send."""
    form = r.randrange(4)
    if form == 0:
        return msgspec.json.encode({"events": events})
    if form == 1:
        return json.dumps({"events": events}, ensure_ascii=True).encode()  # \\u escapes
    if form == 2:
        return json.dumps({"events": events}, indent=2, ensure_ascii=False).encode()
    spaced = b" ,\r\n ".join(json.dumps(e).encode() for e in events)
    return b' \n{ "events" :\t[ ' + spaced + b"]}\n"


# Dimensions as JSON text, for what a dict cannot show: escapes, a name given twice (the
# last one counts), int64's bounds (sums past them), exponents, an equal int and float.
RAW_DIMS = {
    "api_call": [
        '"region":"us"',
        '"region":"u\\u0073"',
        '"region":"eu","region":"us"',
        '"region":"us","region":"eu"',
        '"re\\u0067ion":"us"',
        '"region":1',
        '"region":true',
    ],
    "completion": [
        '"tokens":9223372036854775807',
        '"tokens":-9223372036854775808',
        '"tokens":-5',
        '"tokens":1e3',
        '"tokens":-0.0',
        '"tokens":true',
        '"tokens":"12"',
        '"latency_ms":123456789.123456789',
        '"latency_ms":5e-324',
        '"latency_ms":9.2e18',
        '"latency_ms":7',
        '"latency_ms":7.0',
    ],
    "login": [
        '"user":"u1"',
        '"user":"\\u00fc\\n"',
        '"user":1',
        '"user":1.0',
        '"user":9007199254740993',
        '"user":true',
        '"user":"b:1"',
        '"user":2.5',
    ],
    "storage_snapshot": ['"gb":2', '"gb":2.0', '"gb":-1', '"gb":1e2', '"gb":"x"'],
}


def _raw_body(r: random.Random, events: list[dict[str, Any]]) -> bytes:
    """The batch with each event's dimensions written from ``RAW_DIMS``."""
    out = []
    for ev in events:
        fields = {k: v for k, v in ev.items() if k != "dimensions"}
        text = msgspec.json.encode(fields)
        frags = RAW_DIMS.get(ev["eventName"], ['"k":1'])
        dims = ",".join(r.sample(frags, k=r.randint(1, min(3, len(frags)))))
        out.append(b'{"dimensions":{' + dims.encode() + b"}," + text[1:])
    return b'{"events":[' + b",".join(out) + b"]}"


def _frames(seed: int, n_frames: int = 40) -> list[Frame]:
    r = random.Random(seed)
    frames, pos = [], 0
    for f in range(n_frames):
        events = [_event(r, i) for i in range(r.randrange(0, 60))]
        if events and r.random() < 0.3:
            events += r.sample(events, k=min(len(events), 5))  # copies within the frame
        kind = KIND_EVENTS
        body = _raw_body(r, events) if r.random() < 0.4 else _body(r, events)
        if r.random() < 0.1:  # usage reports between event frames
            kind = KIND_USAGE
            usage = [{"customerId": "acme", "featureId": "seats", "value": r.randint(1, 9)}]
            body = msgspec.json.encode({"usages": usage})
        received = int((NOW - EPOCH) // ONE_US) + f * 1000
        frames.append(Frame(pos, pos + len(body) + 24, kind, received, body))
        pos += len(body) + 24
    return frames


def _run(frames: list[Frame], tmp_path: Path) -> Aggregator:
    agg = Aggregator(None, None, load_catalog(), tmp_path)  # type: ignore[arg-type]
    for frame in frames:
        agg._apply(frame)
    return agg


def _both(frames: list[Frame], tmp_path: Path) -> tuple[Aggregator, Aggregator]:
    """The frames through the Python reference path, then through the native core."""
    with pytest.MonkeyPatch.context() as m:
        m.setattr(aggregator_module, "core", None)
        m.setattr(dedup_module, "core", None)
        reference = _run(frames, tmp_path / "py")
    native = _run(frames, tmp_path / "c")
    assert isinstance(reference.dedup, DedupWindow)
    assert isinstance(native.dedup, NativeDedupWindow)
    return reference, native


def _state(agg: Aggregator) -> list[list[Any]]:
    """The counters' state, sorted, with exact sums as exact numbers: their partials may
    differ in form (the core sums a frame before adding it) but never in value."""
    rows = sorted(agg.book.snapshot(), key=lambda row: row[:4])
    for row in rows:
        if row[5] in ("SUM", "AVG"):
            row[6][1] = sum(map(Fraction, row[6][1]), Fraction(0))
    return rows


def _rows(agg: Aggregator) -> list[dict[str, Any]]:
    """The raw rows, with payloads decoded (their text is the client's, by design)."""
    cols = {name: col.to_pylist() for name, col in agg._raw.columns().items()}
    rows = [dict(zip(cols, values, strict=True)) for values in zip(*cols.values(), strict=True)]
    for row in rows:
        row["payload"] = msgspec.json.decode(row["payload"])
        row["payload"].pop("timestamp", None)  # compared as the ``timestamp`` column
        if row["payload"].get("resourceId") is None:
            row["payload"].pop("resourceId", None)
        if not row["payload"].get("dimensions"):
            row["payload"].pop("dimensions", None)
    return rows


@pytest.mark.parametrize("seed", range(6))
def test_the_native_core_counts_and_stores_what_the_python_path_does(
    seed: int, tmp_path: Path
) -> None:
    reference, native = _both(_frames(seed), tmp_path)
    assert _state(native) == _state(reference)
    assert [(ck, repr(v)) for ck, _, v in native.book.items()] == [
        (ck, repr(v)) for ck, _, v in reference.book.items()
    ]  # the same values, of the same types
    assert native.dedup.arrivals() == reference.dedup.arrivals()
    assert len(native.dedup) == len(reference.dedup) > 0
    assert _rows(native) == _rows(reference)
    assert native._raw.n == reference._raw.n
    # both paths were taken (these frames are made to send many events to Python)
    assert min(native.counted_by.values()) > 0


def test_simulated_traffic_is_counted_by_the_core_to_the_expected_values(tmp_path: Path) -> None:
    now = int((NOW - EPOCH) // ONE_US)
    traffic = generate(load_catalog(), now, n_events=20_000)
    assert traffic.expected is not None
    bodies = [(KIND_EVENTS, b) for b in traffic.event_batches + traffic.duplicate_batches]
    bodies += [(KIND_USAGE, b) for b in traffic.usage_batches]
    frames = [Frame(i * 10, i * 10 + 10, k, now, b) for i, (k, b) in enumerate(bodies)]
    agg = _run(frames, tmp_path)
    assert sorted(agg.book.items()) == sorted(traffic.expected.items())
    assert agg._raw.n == traffic.unique_events + 16  # and four usage reports per customer
    # after the first events of each period, the core counts nearly everything itself
    assert agg.counted_by["native"] > 0.9 * traffic.unique_events


def test_the_scan_parses_plain_rfc3339_as_msgspec_does() -> None:
    r = random.Random(3)
    window = NativeDedupWindow()
    parsed = 0
    for i in range(3000):
        t = NOW - timedelta(microseconds=r.randrange(-(10**15), 10**15))
        stamp = _stamp(r, t) or "2026-01-01T00:00:00Z"
        ev = {"customerId": "c", "eventName": "e", "idempotencyKey": str(i), "timestamp": stamp}
        body = msgspec.json.encode({"events": [ev]})
        scan = core.scan_events(window, body, 0)
        assert scan is not None
        stamps, unparsed = scan[3], scan[4]
        decoded = msgspec.json.decode(body, type=EventBatch).events[0].timestamp
        assert decoded is not None
        # Any other form is left to msgspec: the aggregator reads it from the decoded item.
        assert bool(unparsed) != bool(PLAIN_RFC3339.fullmatch(stamp)), stamp
        if not unparsed:
            parsed += 1
            assert int.from_bytes(stamps, "little", signed=True) == (decoded - EPOCH) // ONE_US
    assert parsed > 1500


@pytest.mark.parametrize(
    "body",
    [
        # a repeated field (msgspec keeps the last one) and an escaped field name
        b'{"events":[{"customerId":"a","customerId":"b","eventName":"e","idempotencyKey":"k"}]}',
        b'{"events":[{"customerI\\u0064":"b","eventName":"e","idempotencyKey":"k"}]}',
        b'{"\\u0065vents":[{"customerId":"b","eventName":"e","idempotencyKey":"k"}]}',
    ],
)
def test_a_shape_the_scan_does_not_take_goes_to_python_with_nothing_admitted(
    body: bytes, tmp_path: Path
) -> None:
    window = NativeDedupWindow()
    assert core.scan_events(window, body, 5) is None
    assert len(window) == 0
    agg = _run([Frame(0, len(body), KIND_EVENTS, 5, body)], tmp_path)
    assert agg.dedup.arrivals() == [(5, [("b", "k")])]
    assert agg._raw.n == 1


def test_the_native_window_admits_and_forgets_as_the_python_one(tmp_path: Path) -> None:
    r = random.Random(11)
    py, c = DedupWindow(), NativeDedupWindow()
    for at in range(400):
        n = r.randrange(0, 30)
        customers = [r.choice(CUSTOMERS) for _ in range(n)]
        keys = [f"{r.choice(KEYS)}{r.randrange(200)}" for _ in range(n)]
        assert c.admit(customers, keys, at) == py.admit(customers, keys, at)
        if r.random() < 0.2:
            cutoff = at - r.randrange(0, 50)
            py.forget_before(cutoff)
            c.forget_before(cutoff)
        assert len(c) == len(py)
        probe = (r.choice(CUSTOMERS), f"{r.choice(KEYS)}{r.randrange(200)}")
        assert (probe in c) == (probe in py)
    assert c.arrivals() == py.arrivals()
    c.load(*_identities(py))
    assert c.arrivals() == py.arrivals()  # known identities: loading them again adds none


def test_a_window_past_two_mib_of_slots_admits_dedupes_and_forgets_exactly() -> None:
    """From 2 MiB up the table has a mapping of its own (huge pages where offered): the
    same answers on both sides of that line, through growth and forgetting."""
    window = NativeDedupWindow()
    n = 150_000  # 16-byte slots kept at most half full: 512 Ki slots, 8 MiB
    for at in range(0, n, 1000):
        keys = [f"k{i}" for i in range(at, at + 1000)]
        assert window.admit(["acme"] * 1000, keys, at) == list(range(1000))
    assert len(window) == n
    assert window.nbytes() >= n * 2 * 16
    assert window.admit(["acme", "acme", "globex"], ["k7", f"k{n}", "k7"], n) == [1, 2]
    window.forget_before(n // 2)
    assert len(window) == n - n // 2 + 2
    assert ("acme", "k7") not in window
    assert ("acme", f"k{n - 1}") in window
    assert window.admit(["acme", "acme"], ["k7", f"k{n - 1}"], n + 1) == [0]


def _identities(window: DedupWindow) -> tuple[list[str], list[str], list[int]]:
    customers: list[str] = []
    keys: list[str] = []
    times: list[int] = []
    for at, idents in window.arrivals():
        for customer, key in idents:
            customers.append(customer)
            keys.append(key)
            times.append(at)
    return customers, keys, times


def test_events_with_resource_ids_are_counted_by_the_core_too(tmp_path: Path) -> None:
    traffic = generate(load_catalog(), int((NOW - EPOCH) // ONE_US), n_events=20_000)
    bodies = []
    for body in traffic.event_batches:
        batch = msgspec.json.decode(body)
        for i, ev in enumerate(batch["events"]):
            ev["resourceId"] = f"r{i % 3}"
        bodies.append(msgspec.json.encode(batch))
    frames = [Frame(i * 10, i * 10 + 10, KIND_EVENTS, 0, b) for i, b in enumerate(bodies)]
    reference, native = _both(frames, tmp_path)
    assert _state(native) == _state(reference)
    assert any(ck[3] == "r2" for ck, _, _ in native.book.items())
    assert native.counted_by["native"] > 0.9 * traffic.unique_events


def test_many_customers_and_resources_grow_the_cores_tables(tmp_path: Path) -> None:
    r = random.Random(5)
    frames = []
    for f in range(30):
        events = [
            {
                "customerId": f"c{r.randrange(400)}",
                "eventName": r.choice(["api_call", "completion"]),
                "idempotencyKey": f"{f}-{i}",
                "resourceId": f"r{r.randrange(5)}",
                "dimensions": {"region": "us", "tokens": r.randrange(9), "latency_ms": 1.5},
            }
            for i in range(500)
        ]
        body = msgspec.json.encode({"events": events})
        frames.append(Frame(f * 10, f * 10 + 10, KIND_EVENTS, 0, body))
    frames += frames[:3]  # copies of whole frames: every identity known
    reference, native = _both(frames, tmp_path)
    assert _state(native) == _state(reference)
    assert native.counted_by["native"] > 5000  # all but the first per counter


def test_drain_beside_the_running_aggregator_applies_each_frame_once(tmp_path: Path) -> None:
    """``drain`` (shutdown, tests) and the aggregator's thread take turns: with the core
    working outside the interpreter lock, two appliers at once would mix frames."""
    traffic = generate(load_catalog(), int((NOW - EPOCH) // ONE_US), n_events=30_000)
    assert traffic.expected is not None
    plane = make_plane(tmp_path / "data")
    try:
        api = Api(plane)
        for i in range(0, len(traffic.event_batches), 6):
            batch = traffic.event_batches[i : i + 6]
            requests = [("POST", "/api/v1/events", {"content": body}) for body in batch]
            assert {r.status_code for r in api.concurrently(requests)} == {202}
            plane.aggregator.drain()  # while the thread is counting the same frames
        assert plane.aggregator.error is None
        counted = {ck: v for ck, _, v in plane.aggregator.book.items()}
        expected = {ck: v for ck, _, v in traffic.expected.items() if ck[1] != "seats"}
        assert counted == expected
        stored = plane.engine.query_arrow("SELECT count() AS n FROM events FINAL")
        assert stored.column("n").to_pylist() == [traffic.unique_events]
    finally:
        plane.stop()


def test_the_window_can_be_read_while_the_core_admits_without_the_interpreter_lock() -> None:
    window = NativeDedupWindow()
    bodies = generate(load_catalog(), int((NOW - EPOCH) // ONE_US), n_events=40_000).event_batches
    first = msgspec.json.decode(bodies[0])["events"][0]
    ident = (first["customerId"], first["idempotencyKey"])
    stop = threading.Event()
    seen: list[int] = []

    def look() -> None:  # as tests and inspection do, from another thread
        while not stop.is_set():
            seen.append(len(window))
            if seen[-1] and ident not in window:
                seen.append(-1)  # fails the order check below

    reader = threading.Thread(target=look)
    reader.start()
    try:
        for body in bodies:  # the table grows (rehashes) many times meanwhile
            assert core.scan_events(window, body, 0) is not None
    finally:
        stop.set()
        reader.join()
    assert len(window) == 40_000
    assert seen == sorted(seen)
