"""Pod-spec building blocks every app workload shares (hardened by default)."""

from __future__ import annotations

from typing import Any

from components.k8s import names

RUN_AS_USER = 10001


def pod_security_context() -> dict[str, Any]:
    """Non-root, RuntimeDefault seccomp, volumes owned by the app's group."""
    return {
        "runAsNonRoot": True,
        "runAsUser": RUN_AS_USER,
        "runAsGroup": RUN_AS_USER,
        "fsGroup": RUN_AS_USER,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def container_security_context() -> dict[str, Any]:
    """Read-only root filesystem, no privilege escalation, every capability dropped."""
    return {
        "runAsNonRoot": True,
        "runAsUser": RUN_AS_USER,
        "readOnlyRootFilesystem": True,
        "allowPrivilegeEscalation": False,
        "privileged": False,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def resources(cpu: str, memory: str, cpu_limit: str | None = None) -> dict[str, Any]:
    """Requests and limits; memory limit = request so a pod is never OOM-killed by a neighbour."""
    return {
        "requests": {"cpu": cpu, "memory": memory},
        "limits": {"cpu": cpu_limit or cpu, "memory": memory},
    }


def zone_spread(labels: dict[str, str], *, hard: bool) -> list[dict[str, Any]]:
    """Spread replicas over zones (hard in prod) and over nodes within a zone."""
    return [
        {
            "maxSkew": 1,
            "topologyKey": names.ZONE_LABEL,
            "whenUnsatisfiable": "DoNotSchedule" if hard else "ScheduleAnyway",
            "labelSelector": {"matchLabels": labels},
        },
        {
            "maxSkew": 1,
            "topologyKey": "kubernetes.io/hostname",
            "whenUnsatisfiable": "ScheduleAnyway",
            "labelSelector": {"matchLabels": labels},
        },
    ]


def http_probe(path: str, *, period: int, failure_threshold: int) -> dict[str, Any]:
    """An HTTP probe on the app port."""
    return {
        "httpGet": {"path": path, "port": "http"},
        "periodSeconds": period,
        "timeoutSeconds": 2,
        "failureThreshold": failure_threshold,
    }


def env(values: dict[str, Any]) -> list[dict[str, Any]]:
    """``env`` entries from a mapping, sorted so renders are stable."""
    return [{"name": k, "value": v} for k, v in sorted(values.items())]


def api_keys_env() -> dict[str, Any]:
    """METERPLANE_API_KEYS from the API-keys Secret (never a literal in the manifest)."""
    return {
        "name": "METERPLANE_API_KEYS",
        "valueFrom": {
            "secretKeyRef": {"name": names.API_KEYS_SECRET, "key": names.API_KEYS_SECRET_KEY}
        },
    }


def clickhouse_env(url: str, user: str) -> list[dict[str, Any]]:
    """METERPLANE_CLICKHOUSE_URL as ``user``, with the password from the credentials Secret
    (never a literal in the manifest): Kubernetes expands ``$(CLICKHOUSE_PASSWORD)`` from
    the entry before it. The passwords are letters and digits, safe inside a URL."""
    scheme, _, host = url.partition("://")
    return [
        {
            "name": "CLICKHOUSE_PASSWORD",
            "valueFrom": {"secretKeyRef": {"name": names.CLICKHOUSE_SECRET, "key": user}},
        },
        {
            "name": "METERPLANE_CLICKHOUSE_URL",
            "value": f"{scheme}://{user}:$(CLICKHOUSE_PASSWORD)@{host}",
        },
    ]


def scratch_volume() -> tuple[dict[str, Any], dict[str, Any]]:
    """A small writable /tmp, since the root filesystem is read-only."""
    return (
        {"name": "tmp", "emptyDir": {"sizeLimit": "256Mi"}},
        {"name": "tmp", "mountPath": "/tmp"},  # noqa: S108 an emptyDir, not the node's /tmp
    )
