"""The real health probe and gate against a real ``meterplane serve`` on loopback."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from meterplane.rollout import GateSettings, HealthGate, HttpHealthProbe, ProbeError, Thresholds
from meterplane.rollout.health import parse_metrics
from tests.release.serving import API_KEY, events_body, free_port, serve


@pytest.mark.slow
def test_probe_and_gate_against_a_running_plane(tmp_path: Path) -> None:
    with serve(tmp_path / "data") as (_, url):
        probe = HttpHealthProbe({"local": url})
        try:
            before = probe.sample("local")
            assert before.ready
            assert before.ready_detail == "/readyz 200"
            assert before.lag is not None
            assert before.lag_unit == "bytes"

            headers = {"X-API-KEY": API_KEY}
            ok = httpx.post(f"{url}/api/v1/events", content=events_body(25, "p"), headers=headers)
            assert ok.status_code == 202
            bad = httpx.post(
                f"{url}/api/v1/events",
                content=json.dumps({"events": [{"customerId": "acme"}]}),
                headers=headers,
            )
            assert bad.status_code == 422

            after = probe.sample("local")
            assert after.accepted - before.accepted == 25
            assert after.rejected.get(422, 0) - before.rejected.get(422, 0) == 1

            gate = HealthGate(
                probe,
                Thresholds(max_error_rate=0.01, max_lag=64 * 1024 * 1024),
                GateSettings(timeout_s=20, interval_s=0.2, soak_s=1.0),
            )
            result = gate.wait("local")
            assert result.ok, result.summary
            assert result.waited_s >= 1.0
        finally:
            probe.close()


def test_an_unreachable_plane_fails_the_gate_with_the_reason() -> None:
    probe = HttpHealthProbe({"gone": f"http://127.0.0.1:{free_port()}"}, timeout_s=1)
    try:
        with pytest.raises(ProbeError, match="ConnectError"):
            probe.sample("gone")
        with pytest.raises(ProbeError, match="no health endpoint"):
            probe.sample("other")
        gate = HealthGate(probe, settings=GateSettings(timeout_s=0.5, interval_s=0.1, soak_s=0))
        result = gate.wait("gone")
        assert not result.ok
        assert result.summary.startswith("probe: ")
    finally:
        probe.close()


def test_parse_metrics_requires_the_ingest_counters() -> None:
    text = (
        "# HELP meterplane_items_accepted_total acked\n"
        "# TYPE meterplane_items_accepted_total counter\n"
        'meterplane_items_accepted_total{kind="event"} 7.0\n'
        'meterplane_items_accepted_total{kind="usage"} 3.0\n'
        "# HELP meterplane_batches_rejected_total refused\n"
        "# TYPE meterplane_batches_rejected_total counter\n"
        'meterplane_batches_rejected_total{status="503"} 2.0\n'
        "# HELP meterplane_buffer_backlog_bytes backlog\n"
        "# TYPE meterplane_buffer_backlog_bytes gauge\n"
        "meterplane_buffer_backlog_bytes 512.0\n"
    )
    assert parse_metrics(text) == (10.0, {503: 2.0}, 512.0)
    with pytest.raises(ProbeError, match="lacks"):
        parse_metrics("# TYPE up gauge\nup 1.0\n")
