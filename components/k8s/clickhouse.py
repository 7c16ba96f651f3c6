"""ClickHouse (Altinity operator): Keeper with 3 replicas and the events cluster.

Replica ``i`` of every shard is pinned to zone ``i mod zones`` through its own pod
template, so two replicas of a shard never share a zone when the cluster spans several;
anti-affinity keeps them off one node in any case. Keeper needs a majority: 3 replicas
over 3 zones survive losing one zone.

Clients never use the operator's passwordless ``default`` user (which it also confines to
the cluster's own pods): the writer (migrations, Flink, archiver, entitlements) may do
anything in the ``meterplane`` database and nothing elsewhere; the sync agent's reader, in
``shared`` and the one workload with egress to the outside, may only read ``counters``.
Both passwords are generated (letters and digits, 32 of them), kept in the
``clickhouse-credentials`` Secret and referenced from the installation and from each
workload's environment, never written into a manifest; ``shared`` gets a copy holding
only the reader's.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_kubernetes as k8s
import pulumi_random as random

from components import versions
from components.k8s import names
from components.k8s.sizing import CLICKHOUSE_CPU, KEEPER_CPU, quantity

KEEPER_REPLICAS = 3
CLICKHOUSE_UID = 101  # the clickhouse user of the official server and keeper images
PASSWORD_LENGTH = 32
READONLY_PROFILE = "readonly"  # readonly=2: reads (and per-query settings), no writes, no DDL
# What each client user may do, and its settings profile: the database's owner, and a
# reader of the rollups.
GRANTS = {
    names.CLICKHOUSE_WRITER: (["GRANT ALL ON meterplane.*"], "default"),
    names.CLICKHOUSE_READER: (["GRANT SELECT ON meterplane.counters"], READONLY_PROFILE),
}


def _hardened_pod(container: dict[str, Any], log_dir: str) -> dict[str, Any]:
    """Non-root, read-only root filesystem; scratch space and logs on emptyDirs."""
    return {
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": CLICKHOUSE_UID,
            "runAsGroup": CLICKHOUSE_UID,
            "fsGroup": CLICKHOUSE_UID,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [
            {
                **container,
                "securityContext": {
                    "runAsNonRoot": True,
                    "runAsUser": CLICKHOUSE_UID,
                    "readOnlyRootFilesystem": True,
                    "allowPrivilegeEscalation": False,
                    "capabilities": {"drop": ["ALL"]},
                },
                "volumeMounts": [
                    {"name": "tmp", "mountPath": "/tmp"},  # noqa: S108 an emptyDir
                    {"name": "logs", "mountPath": log_dir},
                ],
            }
        ],
        "volumes": [
            {"name": "tmp", "emptyDir": {"sizeLimit": "1Gi"}},
            {"name": "logs", "emptyDir": {"sizeLimit": "2Gi"}},
        ],
    }


@dataclass(frozen=True)
class ClickHouseArgs:
    """Layout, volume size and zones of the cluster."""

    shards: int
    replicas: int
    volume: str
    zones: tuple[str, ...]
    prod: bool
    # The operator release whose CRDs these custom resources need.
    operator: pulumi.Resource | None = None
    # The stack's common labels (customer, environment, managed-by) for every object.
    labels: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.replicas < 2:
            raise ValueError("ClickHouseArgs.replicas must be at least 2")
        if self.shards < 1 or not self.zones:
            raise ValueError("ClickHouseArgs: need shards >= 1 and at least one zone")


def _volume_claim(name: str, size: str) -> dict[str, Any]:
    return {
        "name": name,
        "reclaimPolicy": "Retain",
        "spec": {
            "accessModes": ["ReadWriteOnce"],
            "storageClassName": names.STORAGE_CLASS,
            "resources": {"requests": {"storage": size}},
        },
    }


def _zone_spread(selector: dict[str, str], hard: bool) -> list[dict[str, Any]]:
    return [
        {
            "maxSkew": 1,
            "topologyKey": names.ZONE_LABEL,
            "whenUnsatisfiable": "DoNotSchedule" if hard else "ScheduleAnyway",
            "labelSelector": {"matchLabels": selector},
        }
    ]


def _users() -> dict[str, Any]:
    """The client users of the installation (``configuration.users``, flattened keys)."""
    users: dict[str, Any] = {}
    for user, (grants, profile) in GRANTS.items():
        users[f"{user}/password"] = {
            "valueFrom": {"secretKeyRef": {"name": names.CLICKHOUSE_SECRET, "key": user}}
        }
        # Reachable from any pod address: the password, the grants and the namespaces'
        # egress policies decide who gets in, not the pod IPs the operator cannot foresee.
        users[f"{user}/networks/ip"] = ["0.0.0.0/0", "::/0"]
        users[f"{user}/grants/query"] = grants
        users[f"{user}/profile"] = profile
    return users


class ClickHouse(pulumi.ComponentResource):
    """Hot store of raw events and counters."""

    url: str

    def __init__(
        self, name: str, args: ClickHouseArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("meterplane:k8s:ClickHouse", name, None, opts)
        self._name = name
        self.secrets = self._build_credentials(args)
        self.keeper = self._build_keeper(args)
        self.installation = self._build_installation(args)
        self.url = names.CLICKHOUSE_URL
        self.register_outputs({"url": self.url})

    def _build_credentials(self, args: ClickHouseArgs) -> list[k8s.core.v1.Secret]:
        """The users' passwords: in ``metering`` both, in ``shared`` the reader's only."""
        passwords = {
            user: random.RandomPassword(
                f"{self._name}-{user.replace('_', '-')}-password",
                length=PASSWORD_LENGTH,
                special=False,  # safe inside the URL the workloads build from it
                opts=pulumi.ResourceOptions(parent=self),
            ).result
            for user in GRANTS
        }
        placement = {
            names.METERING_NAMESPACE: list(GRANTS),
            names.SHARED_NAMESPACE: [names.CLICKHOUSE_READER],
        }
        return [
            k8s.core.v1.Secret(
                f"{self._name}-credentials-{namespace}",
                metadata={
                    "name": names.CLICKHOUSE_SECRET,
                    "namespace": namespace,
                    "labels": dict(args.labels),
                },
                type="Opaque",
                string_data={user: passwords[user] for user in users},
                opts=pulumi.ResourceOptions(
                    parent=self, depends_on=[args.operator] if args.operator else []
                ),
            )
            for namespace, users in placement.items()
        ]

    def _build_keeper(self, args: ClickHouseArgs) -> k8s.apiextensions.CustomResource:
        selector = {"clickhouse-keeper.altinity.com/chk": names.CLICKHOUSE_KEEPER}
        return k8s.apiextensions.CustomResource(
            f"{self._name}-keeper",
            api_version=versions.CLICKHOUSE_KEEPER_API,
            kind="ClickHouseKeeperInstallation",
            metadata={
                "name": names.CLICKHOUSE_KEEPER,
                "namespace": names.METERING_NAMESPACE,
                "labels": dict(args.labels),
            },
            spec={
                "configuration": {
                    "clusters": [{"name": "keeper", "layout": {"replicasCount": KEEPER_REPLICAS}}]
                },
                "defaults": {
                    "templates": {"podTemplate": "keeper", "dataVolumeClaimTemplate": "keeper-data"}
                },
                "templates": {
                    "podTemplates": [
                        {
                            "name": "keeper",
                            "spec": {
                                "topologySpreadConstraints": _zone_spread(selector, args.prod),
                                **_hardened_pod(
                                    {
                                        "name": "clickhouse-keeper",
                                        "image": versions.CLICKHOUSE_KEEPER_IMAGE,
                                        "resources": {
                                            "requests": {
                                                "cpu": quantity(KEEPER_CPU),
                                                "memory": "1Gi",
                                            },
                                            "limits": {"memory": "1Gi"},
                                        },
                                    },
                                    "/var/log/clickhouse-keeper",
                                ),
                            },
                        }
                    ],
                    "volumeClaimTemplates": [_volume_claim("keeper-data", "20Gi")],
                },
            },
            opts=pulumi.ResourceOptions(
                parent=self, depends_on=[args.operator] if args.operator else []
            ),
        )

    def _build_installation(self, args: ClickHouseArgs) -> k8s.apiextensions.CustomResource:
        zones = args.zones
        pod_templates = [
            {
                "name": f"replica-{index}",
                "zone": {"key": names.ZONE_LABEL, "values": [zones[index % len(zones)]]},
                "podDistribution": [{"type": "ClickHouseAntiAffinity", "scope": "Shard"}],
                "spec": _hardened_pod(
                    {
                        "name": "clickhouse",
                        "image": versions.CLICKHOUSE_IMAGE,
                        "resources": {
                            "requests": {"cpu": quantity(CLICKHOUSE_CPU), "memory": "8Gi"},
                            "limits": {"memory": "8Gi"},
                        },
                    },
                    "/var/log/clickhouse-server",
                ),
            }
            for index in range(args.replicas)
        ]
        return k8s.apiextensions.CustomResource(
            f"{self._name}-installation",
            api_version=versions.CLICKHOUSE_API,
            kind="ClickHouseInstallation",
            metadata={
                "name": names.CLICKHOUSE_INSTALLATION,
                "namespace": names.METERING_NAMESPACE,
                "labels": dict(args.labels),
            },
            spec={
                "defaults": {"templates": {"dataVolumeClaimTemplate": "data"}},
                "configuration": {
                    "users": _users(),
                    "profiles": {f"{READONLY_PROFILE}/readonly": "2"},
                    "zookeeper": {
                        "nodes": [
                            {
                                "host": names.CLICKHOUSE_KEEPER_HOST,
                                "port": 2181,
                            }
                        ]
                    },
                    "clusters": [
                        {
                            "name": names.CLICKHOUSE_CLUSTER,
                            "layout": {
                                "shardsCount": args.shards,
                                "replicasCount": args.replicas,
                                "replicas": [
                                    {"templates": {"podTemplate": f"replica-{index}"}}
                                    for index in range(args.replicas)
                                ],
                            },
                        }
                    ],
                },
                "templates": {
                    "podTemplates": pod_templates,
                    "volumeClaimTemplates": [_volume_claim("data", args.volume)],
                },
            },
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.keeper, *self.secrets]),
        )
