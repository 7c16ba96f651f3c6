"""The health gate's decisions, driven by a scripted probe and a clock the test advances."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from meterplane.rollout import (
    GateSettings,
    HealthGate,
    HealthSample,
    ProbeError,
    RolloutError,
    ScriptedProbe,
    Thresholds,
    evaluate,
)
from meterplane.rollout.health import healthy_sample


@dataclass
class FakeClock:
    """Time that moves only when the gate sleeps."""

    now: float = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


Script = list[HealthSample | ProbeError]


def gate(script: Script, **settings: float) -> tuple[HealthGate, FakeClock]:
    clock = FakeClock()
    defaults = {"timeout_s": 100.0, "interval_s": 10.0, "soak_s": 30.0}
    return (
        HealthGate(
            ScriptedProbe({"s": script}),
            Thresholds(max_error_rate=0.01, max_lag=1000.0),
            GateSettings(**{**defaults, **settings}),
            clock=clock,
            sleep=clock.sleep,
        ),
        clock,
    )


def rejected(accepted: float, errors: dict[int, float], lag: float = 0.0) -> HealthSample:
    return HealthSample(True, "/readyz 200", accepted, errors, lag)


NOT_READY = HealthSample(False, "/readyz 503", 0.0, {}, 0.0)


def test_passes_after_the_soak_period_of_continuous_health() -> None:
    g, clock = gate([healthy_sample(i * 100.0) for i in range(10)])
    result = g.wait("s")
    assert result.ok
    assert clock.now == 30.0  # samples at 0, 10, 20, 30: healthy throughout
    assert {c.name for c in result.checks} == {"ready", "error-rate", "lag"}


def test_waits_out_a_rolling_restart_then_passes() -> None:
    g, clock = gate([NOT_READY, NOT_READY, ProbeError("refused"), *[healthy_sample()] * 5])
    result = g.wait("s")
    assert result.ok
    assert clock.now == 60.0  # healthy from t=30, soaked at t=60


def test_error_rate_over_the_limit_fails_at_once() -> None:
    script = [rejected(1000, {503: 0}), rejected(1500, {503: 40, 422: 900})]
    g, clock = gate(script)
    result = g.wait("s")
    assert not result.ok
    assert clock.now == 10.0
    (bad,) = [c for c in result.checks if not c.ok]
    assert bad.name == "error-rate"
    assert bad.fatal
    assert "40 refused batches" in bad.detail  # the 422s are the callers' fault, not counted


def test_errors_before_the_apply_do_not_count() -> None:
    # The baseline already holds many 503s from an earlier incident; none are new.
    script = [rejected(100, {503: 5000}), *[rejected(100 + 50 * i, {503: 5000}) for i in (1, 2, 3)]]
    assert gate(script)[0].wait("s").ok


def test_a_restarted_pod_resets_counters_without_hiding_errors() -> None:
    script = [rejected(10_000, {503: 10}), rejected(100, {503: 50})]
    result = gate(script)[0].wait("s")
    assert not result.ok  # 50 errors of 150 answered since the restart
    assert "50 refused batches" in result.summary


def test_lag_over_the_limit_times_out() -> None:
    g, clock = gate([healthy_sample(lag=5000.0)])
    result = g.wait("s")
    assert not result.ok
    assert clock.now == 100.0
    assert "lag: 5000 bytes behind" in result.summary


def test_a_flap_restarts_the_soak() -> None:
    script = [healthy_sample(), healthy_sample(), NOT_READY, *[healthy_sample()] * 10]
    g, clock = gate(script)
    assert g.wait("s").ok
    assert clock.now == 60.0  # healthy again at 30, soaked at 60


def test_never_reachable_times_out_with_the_reason() -> None:
    result = gate([ProbeError("connection refused")])[0].wait("s")
    assert not result.ok
    assert result.summary == "probe: connection refused"


def test_missing_lag_source_is_not_healthy() -> None:
    checks = evaluate(healthy_sample(), HealthSample(True, "ok", 0.0, {}, None), Thresholds())
    assert [c.name for c in checks if not c.ok] == ["lag"]


def test_gate_settings_are_validated() -> None:
    with pytest.raises(RolloutError):
        GateSettings(timeout_s=10, soak_s=60)
    with pytest.raises(RolloutError):
        GateSettings(interval_s=0)
