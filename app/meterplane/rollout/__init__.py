"""Upgrade rollouts over customer stacks: waves by ring, a health gate, stop the line.

``meterplane rollout plan`` groups stacks into waves by ``release.ring``;
``meterplane rollout run`` applies them in order with the Pulumi Automation API (or, with
``--dry-run``, renders them offline), waits on the health gate after every stack, and
stops at the first failure.
"""

from meterplane.rollout.errors import RolloutError
from meterplane.rollout.health import (
    Check,
    GateResult,
    GateSettings,
    HealthGate,
    HealthSample,
    HttpHealthProbe,
    KafkaConsumerLag,
    ProbeError,
    ScriptedProbe,
    SkippedGate,
    Thresholds,
    evaluate,
)
from meterplane.rollout.run import Outcome, Rollout, RolloutReport, StackOutcome
from meterplane.rollout.runner import (
    ApplyResult,
    AutomationStackRunner,
    OfflineStackRunner,
    StackRunner,
)
from meterplane.rollout.waves import RINGS, StackRelease, Wave, group_waves, plan_waves

__all__ = [
    "RINGS",
    "ApplyResult",
    "AutomationStackRunner",
    "Check",
    "GateResult",
    "GateSettings",
    "HealthGate",
    "HealthSample",
    "HttpHealthProbe",
    "KafkaConsumerLag",
    "OfflineStackRunner",
    "Outcome",
    "ProbeError",
    "Rollout",
    "RolloutError",
    "RolloutReport",
    "ScriptedProbe",
    "SkippedGate",
    "StackOutcome",
    "StackRelease",
    "StackRunner",
    "Thresholds",
    "Wave",
    "evaluate",
    "group_waves",
    "plan_waves",
]
