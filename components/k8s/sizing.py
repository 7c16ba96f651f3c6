"""Per-pod CPU requests and slots, shared by the components and infra/sizing.py.

The node-count formula adds these up, so a change here changes both what a pod asks for
and how many nodes the stack provisions.
"""

from __future__ import annotations

# Slots per task manager: 2 vCPU task managers run 4 light PyFlink subtasks each.
FLINK_SLOTS_PER_TASKMANAGER = 4

# vCPU requested per pod.
KAFKA_BROKER_CPU = 2.0
KAFKA_CONTROLLER_CPU = 1.0
CLICKHOUSE_CPU = 2.0
KEEPER_CPU = 0.5
FLINK_TASKMANAGER_CPU = 2.0
FLINK_JOBMANAGER_CPU = 1.0
APP_SERVICE_CPU = 1.0  # ingest, entitlements
SYNC_AGENT_CPU = 0.5
OPERATORS_CPU = 2.0  # cert-manager, Strimzi, Flink and ClickHouse operators together


def quantity(cpu: float) -> str:
    """A CPU request as a Kubernetes quantity (``2``, ``500m``)."""
    return str(int(cpu)) if cpu.is_integer() else f"{int(cpu * 1000)}m"
