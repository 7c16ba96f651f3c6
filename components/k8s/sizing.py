"""Constants the on-cluster components and the sizing formula (infra/sizing.py) share."""

from __future__ import annotations

# Slots per task manager: 2 vCPU task managers run 4 light PyFlink subtasks each.
FLINK_SLOTS_PER_TASKMANAGER = 4
