"""Zone redundancy: node pools over zones, replicated Kafka and ClickHouse, disruption budgets.

Losing one zone must not lose an acknowledged event or stop ingestion: nodes spread over at
least three zones, Kafka keeps three rack-aware replicas and refuses writes with fewer than
two in sync, ClickHouse keeps two replicas coordinated by a three-node Keeper, and every
stateful or ingest workload has a PodDisruptionBudget so a node drain cannot take all its
pods at once.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from policies.core import (
    Context,
    PolicySpec,
    Resource,
    Severity,
    Violation,
    as_list,
    as_mapping,
    as_number,
    get,
    is_unknown,
    of_type,
    refers_to,
    short,
)
from policies.encryption import AKS_CLUSTER, EKS_CLUSTER, GKE_CLUSTER

EKS_NODE_GROUP = "aws:eks/nodeGroup:NodeGroup"
AWS_SUBNET = "aws:ec2/subnet:Subnet"
GKE_NODE_POOL = "gcp:container/nodePool:NodePool"
AKS_AGENT_POOL = "azure-native:containerservice:AgentPool"
KAFKA = "kubernetes:kafka.strimzi.io/v1:Kafka"
KAFKA_NODE_POOL = "kubernetes:kafka.strimzi.io/v1:KafkaNodePool"
KAFKA_TOPIC = "kubernetes:kafka.strimzi.io/v1:KafkaTopic"
CLICKHOUSE = "kubernetes:clickhouse.altinity.com/v1:ClickHouseInstallation"
CLICKHOUSE_KEEPER = "kubernetes:clickhouse-keeper.altinity.com/v1:ClickHouseKeeperInstallation"
DEPLOYMENT = "kubernetes:apps/v1:Deployment"
STATEFUL_SET = "kubernetes:apps/v1:StatefulSet"
PDB = "kubernetes:policy/v1:PodDisruptionBudget"

ZONE_LABEL = "topology.kubernetes.io/zone"
# A GKE location with a zone suffix (us-central1-a) is zonal; without one it is regional.
_ZONAL_LOCATION = re.compile(r"^[a-z]+-[a-z]+\d+-[a-z]$")


# --- node pools --------------------------------------------------------------------------


def _eks_pool_zones(pool: Resource, resources: Sequence[Resource]) -> set[str] | None:
    """Zones of an EKS node group: those of its subnets (None when not knowable yet)."""
    subnet_ids = pool.props.get("subnetIds")
    zones: set[str] = set()
    for subnet in of_type(resources, AWS_SUBNET):
        if subnet.urn in pool.dependencies.get("subnetIds", ()) or (
            subnet.id is not None and subnet.id in as_list(subnet_ids)
        ):
            zone = subnet.props.get("availabilityZone") or subnet.props.get("availabilityZoneId")
            if isinstance(zone, str):
                zones.add(zone)
    if not zones:
        label = as_mapping(pool.props.get("labels")).get(ZONE_LABEL)
        if isinstance(label, str):
            zones.add(label)
    if not zones and is_unknown(subnet_ids):
        return None
    return zones


def _gke_zones(locations: object, cluster: Resource | None) -> set[str] | None:
    if is_unknown(locations):
        return None
    zones = {zone for zone in as_list(locations) if isinstance(zone, str)}
    if zones or cluster is None:
        return zones
    inherited = cluster.props.get("nodeLocations")
    zones = {zone for zone in as_list(inherited) if isinstance(zone, str)}
    location = cluster.props.get("location")
    if zones:
        if isinstance(location, str) and _ZONAL_LOCATION.match(location):
            zones.add(location)
        return zones
    if isinstance(location, str) and not _ZONAL_LOCATION.match(location):
        return None  # a regional cluster without nodeLocations uses the region's default zones
    return {location} if isinstance(location, str) else set()


def _cluster_of(
    pool: Resource, prop: str, clusters: list[Resource], alias_props: tuple[str, ...]
) -> Resource | None:
    value = pool.props.get(prop)
    for cluster in clusters:
        aliases = [cluster.props.get(alias) for alias in alias_props] + [cluster.name]
        if refers_to(pool, prop, value, cluster, aliases):
            return cluster
    return clusters[0] if len(clusters) == 1 else None


def _pools(
    resources: Sequence[Resource],
) -> Iterator[tuple[Resource | None, Resource, set[str] | None]]:
    """(cluster, pool, zones) for every node pool of the stack.

    Zones are counted per cluster, not per pool: one pool per zone is the usual shape for
    zone-bound volumes (EBS, Azure disks), and a multi-zone pool counts all its zones.
    """
    eks = list(of_type(resources, EKS_CLUSTER))
    for pool in of_type(resources, EKS_NODE_GROUP):
        cluster = _cluster_of(pool, "clusterName", eks, ("name",))
        yield cluster, pool, _eks_pool_zones(pool, resources)
    gke = list(of_type(resources, GKE_CLUSTER))
    for pool in of_type(resources, GKE_NODE_POOL):
        cluster = _cluster_of(pool, "cluster", gke, ("name",))
        yield cluster, pool, _gke_zones(pool.props.get("nodeLocations"), cluster)
    aks = list(of_type(resources, AKS_CLUSTER))
    for pool in of_type(resources, AKS_AGENT_POOL):
        cluster = _cluster_of(pool, "resourceName", aks, ("resourceName",))
        zones = pool.props.get("availabilityZones")
        yield cluster, pool, None if is_unknown(zones) else set(as_list(zones))
    for cluster in aks:
        for profile in as_list(cluster.props.get("agentPoolProfiles")):
            zones = get(profile, "availabilityZones")
            name = get(profile, "name", "profile")
            profile_pool = Resource(AKS_AGENT_POOL, f"{cluster.name}/{name}", cluster.urn, {})
            yield cluster, profile_pool, None if is_unknown(zones) else set(as_list(zones))


def node_pools_multi_zone(resources: Sequence[Resource], context: Context) -> Iterator[Violation]:
    """Each cluster's node pools together span at least ``minZones`` zones."""
    minimum = int(context.option("minZones"))
    per_cluster: dict[str, tuple[Resource | None, set[str], list[str]]] = {}
    for cluster, pool, zones in _pools(resources):
        if zones is None:
            continue  # not knowable during preview; `pulumi up` checks again
        key = cluster.urn if cluster is not None else pool.urn
        _, seen, names = per_cluster.setdefault(key, (cluster, set(), []))
        seen.update(zones)
        names.append(pool.name)
    for key, (cluster, zones, names) in per_cluster.items():
        if len(zones) < minimum:
            owner = short(cluster) if cluster is not None else "node pools"
            yield Violation(
                f"{owner} has node pools in {len(zones)} zone(s) {sorted(zones)} "
                f"({', '.join(names)}); needs at least {minimum}",
                key,
            )


# --- Kafka -------------------------------------------------------------------------------


def _at_least(settings: Mapping[str, Any], key: str, minimum: float) -> str | None:
    value = settings.get(key)
    if is_unknown(value):
        return None
    number = as_number(value)
    if number is None:
        return f"{key} is not set (needs >= {minimum:.0f})"
    if number < minimum:
        return f"{key} is {number:.0f} (needs >= {minimum:.0f})"
    return None


def kafka_replication(resource: Resource, context: Context) -> Iterator[str]:
    """Kafka is rack-aware by zone and keeps ``replicationFactor`` copies, ``minInSync`` in sync."""
    factor = float(context.option("replicationFactor"))
    in_sync = float(context.option("minInSyncReplicas"))
    if resource.type == KAFKA:
        rack_key = get(resource.props, "spec.kafka.rack.topologyKey")
        if rack_key != context.option("rackTopologyKey") and not is_unknown(rack_key):
            yield (
                f"{short(resource)} is not rack-aware by zone (spec.kafka.rack.topologyKey is "
                f"{rack_key or 'not set'}, needs {context.option('rackTopologyKey')})"
            )
        settings = as_mapping(get(resource.props, "spec.kafka.config"))
        checks = (
            ("default.replication.factor", factor),
            ("offsets.topic.replication.factor", factor),
            ("transaction.state.log.replication.factor", factor),
            ("min.insync.replicas", in_sync),
            ("transaction.state.log.min.isr", in_sync),
        )
        for key, minimum in checks:
            problem = _at_least(settings, key, minimum)
            if problem:
                yield f"{short(resource)} spec.kafka.config {problem}"
    elif resource.type == KAFKA_NODE_POOL:
        roles = as_list(get(resource.props, "spec.roles"))
        replicas = as_number(get(resource.props, "spec.replicas"))
        if ("broker" in roles or "controller" in roles) and (replicas or 0) < factor:
            yield (
                f"{short(resource)} ({'/'.join(str(role) for role in roles)}) has "
                f"{replicas or 0:.0f} replicas (needs >= {factor:.0f})"
            )
    elif resource.type == KAFKA_TOPIC:
        replicas = get(resource.props, "spec.replicas")
        if not is_unknown(replicas) and (as_number(replicas) or 0) < factor:
            yield f"{short(resource)} has {replicas or 'no'} replicas (needs >= {factor:.0f})"
        problem = _at_least(
            as_mapping(get(resource.props, "spec.config")), "min.insync.replicas", in_sync
        )
        if problem and "not set" not in problem:
            yield f"{short(resource)} spec.config {problem}"


# --- ClickHouse --------------------------------------------------------------------------


def _replicas(layout: object) -> float:
    """Replicas of a ClickHouse layout: ``replicasCount`` or the explicit list (default 1)."""
    count = as_number(get(layout, "replicasCount"))
    if count is not None:
        return count
    listed = as_list(get(layout, "replicas"))
    return float(len(listed)) if listed else 1.0


def clickhouse_replication(resource: Resource, context: Context) -> Iterator[str]:
    """ClickHouse keeps ``minReplicas`` replicas per shard; Keeper runs ``keeperReplicas``."""
    clusters = as_list(get(resource.props, "spec.configuration.clusters"))
    if resource.type == CLICKHOUSE:
        minimum = float(context.option("minReplicas"))
        if not clusters:
            yield f"{short(resource)} declares no cluster (spec.configuration.clusters)"
        for cluster in clusters:
            replicas = _replicas(get(cluster, "layout"))
            if replicas < minimum:
                yield (
                    f"{short(resource)} cluster {get(cluster, 'name', '?')} has "
                    f"{replicas:.0f} replica(s) per shard (needs >= {minimum:.0f})"
                )
        if not as_list(get(resource.props, "spec.configuration.zookeeper.nodes")):
            yield (
                f"{short(resource)} names no Keeper (spec.configuration.zookeeper.nodes); "
                "replicated tables cannot coordinate"
            )
    elif resource.type == CLICKHOUSE_KEEPER:
        wanted = float(context.option("keeperReplicas"))
        if not clusters:
            yield f"{short(resource)} declares no cluster (spec.configuration.clusters)"
        for cluster in clusters:
            replicas = _replicas(get(cluster, "layout"))
            if replicas < wanted or replicas % 2 == 0:
                yield (
                    f"{short(resource)} runs {replicas:.0f} Keeper node(s) "
                    f"(needs an odd number >= {wanted:.0f} for a quorum that survives a zone)"
                )


# --- disruption budgets ------------------------------------------------------------------


def _namespace(resource: Resource) -> str:
    namespace = get(resource.props, "metadata.namespace")
    return namespace if isinstance(namespace, str) else "default"


def _workload_name(resource: Resource) -> str:
    name = get(resource.props, "metadata.name")
    return name if isinstance(name, str) else resource.name


def _wants_budget(workload: Resource, patterns: list[str]) -> bool:
    if workload.type == STATEFUL_SET:
        return True
    name = _workload_name(workload)
    labels = as_mapping(get(workload.props, "spec.template.metadata.labels"))
    values = {
        name,
        str(labels.get("app.kubernetes.io/name", "")),
        str(labels.get("app.kubernetes.io/component", "")),
        str(labels.get("app", "")),
    }
    return any(pattern in values or name.endswith(f"-{pattern}") for pattern in patterns)


def _selects(budget: Resource, pod_labels: Mapping[str, Any]) -> bool:
    selector = as_mapping(get(budget.props, "spec.selector"))
    match = as_mapping(selector.get("matchLabels"))
    if not match and not as_list(selector.get("matchExpressions")):
        return True  # policy/v1: an empty selector selects every pod of the namespace
    return all(pod_labels.get(key) == value for key, value in match.items())


def pod_disruption_budgets(resources: Sequence[Resource], context: Context) -> Iterator[Violation]:
    """Every StatefulSet and every ingest Deployment is covered by a PodDisruptionBudget."""
    patterns = [str(pattern) for pattern in context.option("workloads")]
    budgets = list(of_type(resources, PDB))
    for workload in of_type(resources, DEPLOYMENT, STATEFUL_SET):
        if not _wants_budget(workload, patterns):
            continue
        pod_labels = as_mapping(get(workload.props, "spec.template.metadata.labels"))
        covering = [
            budget
            for budget in budgets
            if _namespace(budget) == _namespace(workload) and _selects(budget, pod_labels)
        ]
        if not covering:
            yield Violation(
                f"{short(workload)} ({_namespace(workload)}/{_workload_name(workload)}) has no "
                "PodDisruptionBudget selecting its pods",
                workload.urn,
            )


POLICIES: tuple[PolicySpec, ...] = (
    PolicySpec(
        name="node-pools-multi-zone",
        description="Every cluster's node pools span at least three zones.",
        domain="redundancy",
        severity=Severity.HIGH,
        remediation=(
            "Give the cluster node pools in three zones: one EKS node group per zone's "
            "subnet, GKE nodeLocations with three zones, AKS availabilityZones [1, 2, 3]."
        ),
        validate_stack=node_pools_multi_zone,
        options={
            "minZones": {
                "type": "integer",
                "minimum": 1,
                "default": 3,
                "description": "Fewest distinct zones a cluster's node pools must cover.",
            }
        },
    ),
    PolicySpec(
        name="kafka-replication",
        description=("Kafka is rack-aware by zone with replication factor >= 3 and min ISR >= 2."),
        domain="redundancy",
        severity=Severity.HIGH,
        remediation=(
            "Set spec.kafka.rack.topologyKey: topology.kubernetes.io/zone and "
            "default.replication.factor / offsets.topic.replication.factor / "
            "transaction.state.log.replication.factor: 3, min.insync.replicas and "
            "transaction.state.log.min.isr: 2; run >= 3 brokers and controllers."
        ),
        validate_resource=kafka_replication,
        options={
            "replicationFactor": {"type": "integer", "minimum": 1, "default": 3},
            "minInSyncReplicas": {"type": "integer", "minimum": 1, "default": 2},
            "rackTopologyKey": {"type": "string", "default": ZONE_LABEL},
        },
    ),
    PolicySpec(
        name="clickhouse-replication",
        description="ClickHouse keeps >= 2 replicas per shard and Keeper runs 3 nodes.",
        domain="redundancy",
        severity=Severity.HIGH,
        remediation=(
            "Set layout.replicasCount >= 2 on every ClickHouseInstallation cluster, point "
            "configuration.zookeeper.nodes at Keeper, and run the "
            "ClickHouseKeeperInstallation with replicasCount: 3."
        ),
        validate_resource=clickhouse_replication,
        options={
            "minReplicas": {"type": "integer", "minimum": 1, "default": 2},
            "keeperReplicas": {"type": "integer", "minimum": 1, "default": 3},
        },
    ),
    PolicySpec(
        name="pod-disruption-budgets",
        description="Stateful and ingest workloads have PodDisruptionBudgets.",
        domain="redundancy",
        severity=Severity.MEDIUM,
        remediation=(
            "Add a policy/v1 PodDisruptionBudget (maxUnavailable: 1) whose selector matches "
            "the workload's pod labels, in the workload's namespace."
        ),
        validate_stack=pod_disruption_budgets,
        options={
            "workloads": {
                "type": "array",
                "items": {"type": "string"},
                "default": ["ingest"],
                "description": (
                    "Deployments that need a budget, by name or app.kubernetes.io/name "
                    "(every StatefulSet always needs one)."
                ),
            }
        },
    ),
)
