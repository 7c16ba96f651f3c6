"""The raw rows the embedded aggregator stores: one per first copy, every column exact,
whatever the frames held (duplicates within and across frames, usage reports, text that
JSON must escape)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec
import pyarrow as pa
import pytest

from meterplane.aggregate import aggregator
from meterplane.aggregate.aggregator import RawRows, json_lines_array
from meterplane.core.errors import ConfigError
from meterplane.core.model import Event
from meterplane.core.settings import load_settings
from meterplane.core.timeutil import now_us
from meterplane.ingest.buffer import Frame
from tests.app.conftest import Api, make_plane

TRICKY = ["line\nbreak", 'quote " and \\ backslash', "tab\there", "ünïcødé ✓ 𝄞", "", "\u2028"]


def test_json_lines_become_one_binary_value_per_document() -> None:
    items = [Event("c", "e", f"k{i}", dimensions={"s": text}) for i, text in enumerate(TRICKY)]
    items.append(Event("c", "e", "plain"))
    array = json_lines_array(msgspec.json.Encoder().encode_lines(items))
    assert array.to_pylist() == [msgspec.json.encode(it) for it in items]


def test_payloads_past_what_one_array_addresses_go_in_chunks(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    frames = [[Event("c", "e", f"k{i}", dimensions={"s": TRICKY[i]}) for i in range(3)]]
    frames.append([Event("c", "e", "last")])
    expected = [msgspec.json.encode(it) for frame in frames for it in frame]
    for limit in (1 << 31, 10):  # the real bound, and one these rows exceed
        monkeypatch.setattr(aggregator, "_MAX_BINARY_BYTES", limit)
        rows = RawRows()
        for f, items in enumerate(frames):
            columns = ([it.customerId for it in items], [it.idempotencyKey for it in items])
            names = [it.eventName for it in items]
            rows.add(
                Frame(f * 10, f * 10 + 10, 1, 5, b""),
                "event",
                items,
                (*columns, names, [5] * len(items), [""] * len(items)),
            )
        payload = rows.columns()["payload"]
        assert payload.to_pylist() == expected
        assert isinstance(payload, pa.Array if limit > 10 else pa.ChunkedArray)


def test_a_body_limit_past_256_mib_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="METERPLANE_MAX_BODY_BYTES"):
        load_settings(env={"METERPLANE_MAX_BODY_BYTES": str(257 << 20)}, data_dir=tmp_path)


def _post(api: Api, path: str, field: str, items: list[dict[str, Any]]) -> None:
    r = api.request("POST", path, content=msgspec.json.encode({field: items}))
    assert r.status_code == 202, r.text


def test_each_first_copy_is_stored_once_with_its_frame(tmp_path: Path) -> None:
    t = now_us() - 3_600_000_000
    stamp = "2026-11-21T10:00:00.123456+02:00"
    first = [
        {"customerId": "acme", "eventName": "api_call", "idempotencyKey": f"a{i}"} for i in range(3)
    ]
    first[1] |= {"timestamp": stamp, "resourceId": "r-1", "dimensions": {"s": TRICKY[0]}}
    first[2]["dimensions"] = {f"k{i} {text}": text for i, text in enumerate(TRICKY)} | {"n": 1.5}
    second = [
        first[1],  # a copy of an earlier frame's event
        {"customerId": "globex", "eventName": "api_call", "idempotencyKey": "b0"},
        {"customerId": "globex", "eventName": "api_call", "idempotencyKey": "b0"},  # in-frame
        {"customerId": "acme", "eventName": "other", "idempotencyKey": "b1", "timestamp": stamp},
    ]
    usage = [{"customerId": "acme", "featureId": "seats", "value": 3, "updateBehavior": "SET"}]
    plane = make_plane(tmp_path / "data")
    try:
        api = Api(plane)
        _post(api, "/api/v1/events", "events", first)
        _post(api, "/api/v1/events", "events", second)
        _post(api, "/api/v1/usage", "usages", usage)
        api.settle()
        plane.aggregator.drain()  # beside the running thread: it waits
        table = plane.engine.query_arrow(
            "SELECT customer_id, idempotency_key, kind, name, "
            "toUnixTimestamp64Micro(timestamp) AS ts, toUnixTimestamp64Micro(ingested_at) AS "
            "received, resource_id, payload, log_pos FROM events FINAL ORDER BY log_pos, "
            "idempotency_key"
        )
    finally:
        plane.stop()
    rows = table.to_pylist()
    got = [(r["customer_id"], r["idempotency_key"], r["kind"], r["name"]) for r in rows]
    assert got[:5] == [
        ("acme", "a0", "event", "api_call"),
        ("acme", "a1", "event", "api_call"),
        ("acme", "a2", "event", "api_call"),
        ("globex", "b0", "event", "api_call"),
        ("acme", "b1", "event", "other"),
    ]
    assert got[5][1].startswith("~")  # a report without a key gets one from its place
    assert got[5][2:] == ("usage", "seats")
    assert len(rows) == 6
    expected = [*first, second[1], second[3], usage[0]]
    assert [msgspec.json.decode(r["payload"]) for r in rows] == expected
    by_frame = [rows[0:3], rows[3:5], rows[5:6]]
    frames = [{(r["received"], r["log_pos"]) for r in f} for f in by_frame]
    assert [len(f) for f in frames] == [1, 1, 1]  # each frame's rows share its receipt and place
    assert len(set.union(*frames)) == 3
    assert [r["resource_id"] for r in rows] == ["", "r-1", "", "", "", ""]
    assert rows[1]["ts"] == rows[4]["ts"] == 1_795_248_000_123_456  # 08:00:00.123456Z
    assert rows[0]["ts"] == rows[0]["received"] > t  # no timestamp: the time of receipt
