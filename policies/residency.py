"""Data residency: only the sync agent reaches outside the cluster, and only the control plane.

Raw events never leave the customer's cloud (DESIGN.md 1, 6). Kubernetes NetworkPolicy is
what enforces that on the cluster: the sync agent admits no ingress and may reach only DNS,
in-cluster peers and the control plane's published ranges; no other workload may be
pointed at the control plane or be granted egress to it or to the whole internet; and the
data-plane namespaces deny egress by default so a workload without its own policy cannot
reach out either.

NetworkPolicy cannot name hosts, so "the control plane" is the stack's
``controlPlane.egressCidrs``; without the stack's configuration the range check is skipped
and only the shape of the policies is checked.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from ipaddress import IPv4Network, IPv6Network, ip_network
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
    is_true,
    is_unknown,
    of_type,
    refers_to,
    short,
)
from policies.encryption import AKS_CLUSTER, EKS_CLUSTER, GKE_CLUSTER
from policies.redundancy import DEPLOYMENT, STATEFUL_SET

NETWORK_POLICY = "kubernetes:networking.k8s.io/v1:NetworkPolicy"
EKS_ADDON = "aws:eks/addon:Addon"
HELM_RELEASE = "kubernetes:helm.sh/v3:Release"
_AKS_ENFORCERS = frozenset({"azure", "calico", "cilium"})
DAEMON_SET = "kubernetes:apps/v1:DaemonSet"
CRON_JOB = "kubernetes:batch/v1:CronJob"
JOB = "kubernetes:batch/v1:Job"

_WORKLOADS = (DEPLOYMENT, STATEFUL_SET, DAEMON_SET, CRON_JOB, JOB)
_DNS_PORTS = frozenset({53.0})
_Network = IPv4Network | IPv6Network


def _namespace(resource: Resource) -> str:
    namespace = get(resource.props, "metadata.namespace")
    return namespace if isinstance(namespace, str) else "default"


def _pod_template(workload: Resource) -> Mapping[str, Any]:
    if workload.type == CRON_JOB:
        return as_mapping(get(workload.props, "spec.jobTemplate.spec.template"))
    return as_mapping(get(workload.props, "spec.template"))


def _pod_labels(workload: Resource) -> Mapping[str, Any]:
    return as_mapping(get(_pod_template(workload), "metadata.labels"))


def _name(resource: Resource) -> str:
    name = get(resource.props, "metadata.name")
    return name if isinstance(name, str) else resource.name


def _is_named(workload: Resource, names: list[str]) -> bool:
    labels = _pod_labels(workload)
    candidates = {_name(workload), str(labels.get("app.kubernetes.io/name", ""))}
    return any(name in candidates for name in names)


def _selecting(policy: Resource, workload: Resource) -> bool:
    if _namespace(policy) != _namespace(workload):
        return False
    selector = as_mapping(get(policy.props, "spec.podSelector"))
    match = as_mapping(selector.get("matchLabels"))
    labels = _pod_labels(workload)
    return all(labels.get(key) == value for key, value in match.items())


def _policy_types(policy: Resource) -> set[str]:
    declared = as_list(get(policy.props, "spec.policyTypes"))
    if declared:
        return {str(kind) for kind in declared}
    # Kubernetes default: Ingress always, Egress only when egress rules are present.
    return {"Ingress", "Egress"} if get(policy.props, "spec.egress") else {"Ingress"}


def _control_plane(context: Context) -> list[_Network]:
    networks: list[_Network] = []
    for cidr in as_list(get(context.stack, "controlPlane.egressCidrs")):
        try:
            networks.append(ip_network(str(cidr), strict=False))
        except ValueError:
            continue
    return networks


def _is_dns_only(rule: Mapping[str, Any]) -> bool:
    ports = as_list(rule.get("ports"))
    return bool(ports) and all(as_number(get(port, "port")) in _DNS_PORTS for port in ports)


def _ip_blocks(rule: Mapping[str, Any]) -> Iterator[tuple[_Network | None, str]]:
    """(network, text) of every ipBlock peer of an egress rule (network None if invalid)."""
    for peer in as_list(rule.get("to")):
        cidr = get(peer, "ipBlock.cidr")
        if cidr is None:
            continue
        try:
            yield ip_network(str(cidr), strict=False), str(cidr)
        except ValueError:
            yield None, str(cidr)


def _opens_everything(rule: Mapping[str, Any]) -> bool:
    """An egress rule with no peers, or a 0.0.0.0/0 peer, reaches every address."""
    if not as_list(rule.get("to")):
        return True
    return any(network is not None and network.prefixlen == 0 for network, _ in _ip_blocks(rule))


def _egress_rules(policies: list[Resource]) -> Iterator[Mapping[str, Any]]:
    for policy in policies:
        if "Egress" in _policy_types(policy):
            for rule in as_list(get(policy.props, "spec.egress")):
                yield as_mapping(rule)


def _check_agent(
    agent: Resource, policies: list[Resource], control_plane: list[_Network]
) -> Iterator[str]:
    selecting = [policy for policy in policies if _selecting(policy, agent)]
    label = f"{short(agent)} (sync agent)"
    if not selecting:
        yield f"{label} has no NetworkPolicy: it admits any ingress and reaches anywhere"
        return
    if not any("Ingress" in _policy_types(policy) for policy in selecting):
        yield f"{label} NetworkPolicies do not restrict ingress"
    for policy in selecting:
        if "Ingress" in _policy_types(policy) and as_list(get(policy.props, "spec.ingress")):
            yield f"{label} admits ingress through {short(policy)}; the agent only dials out"
    if not any("Egress" in _policy_types(policy) for policy in selecting):
        yield f"{label} NetworkPolicies do not restrict egress"
        return
    for rule in _egress_rules(selecting):
        if _is_dns_only(rule):
            continue
        if _opens_everything(rule):
            yield f"{label} may reach any address (an egress rule without peers or to 0.0.0.0/0)"
            continue
        for network, text in _ip_blocks(rule):
            inside = network is not None and any(
                network.version == allowed.version and network.subnet_of(allowed)  # type: ignore[arg-type]
                for allowed in control_plane
            )
            if control_plane and not inside:
                yield f"{label} may reach {text}, outside the control plane's egressCidrs"


def _check_other(
    workload: Resource, policies: list[Resource], context: Context, control_plane: list[_Network]
) -> Iterator[str]:
    endpoint = get(context.stack, "controlPlane.endpoint")
    for container in as_list(get(_pod_template(workload), "spec.containers")):
        for variable in as_list(get(container, "env")):
            name, value = get(variable, "name"), get(variable, "value")
            if name == "METERPLANE_CONTROL_PLANE_URL" or (endpoint and value == endpoint):
                yield (
                    f"{short(workload)} is configured with the control plane address ({name}); "
                    "only the sync agent may talk to the control plane"
                )
    allowed_open = [str(name) for name in context.option("allowOpenEgress")]
    for rule in _egress_rules([policy for policy in policies if _selecting(policy, workload)]):
        if _is_dns_only(rule):
            continue
        if _opens_everything(rule) and not _is_named(workload, allowed_open):
            yield f"{short(workload)} is granted egress to any address; only the sync agent may"
            continue
        for peer in as_list(rule.get("to")):
            reached = _control_plane_reached(peer, control_plane)
            if reached:
                yield f"{short(workload)} is granted egress to the control plane range {reached}"


def _control_plane_reached(peer: object, control_plane: list[_Network]) -> str | None:
    """The ipBlock of ``peer`` if it reaches a control-plane range not carved out by except."""
    cidr = get(peer, "ipBlock.cidr")
    if cidr is None:
        return None
    try:
        network = ip_network(str(cidr), strict=False)
    except ValueError:
        return None
    carved: list[_Network] = []
    for excluded in as_list(get(peer, "ipBlock.except")):
        try:
            carved.append(ip_network(str(excluded), strict=False))
        except ValueError:
            continue
    for target in control_plane:
        if target.version != network.version or not network.overlaps(target):
            continue
        if not any(
            target.version == cut.version and target.subnet_of(cut)  # type: ignore[arg-type]
            for cut in carved
        ):
            return str(cidr)
    return None


def _default_deny_gaps(
    workloads: list[Resource], policies: list[Resource], namespaces: list[str]
) -> Iterator[tuple[str, Resource]]:
    """Data-plane namespaces with workloads but no namespace-wide egress policy."""
    reported: set[str] = set()
    for workload in workloads:
        namespace = _namespace(workload)
        if namespace not in namespaces or namespace in reported:
            continue
        covered = any(
            _namespace(policy) == namespace
            and not as_mapping(get(policy.props, "spec.podSelector")).get("matchLabels")
            and not as_list(get(policy.props, "spec.podSelector.matchExpressions"))
            and "Egress" in _policy_types(policy)
            for policy in policies
        )
        if not covered:
            reported.add(namespace)
            yield namespace, workload


def egress_only_sync_agent(resources: Sequence[Resource], context: Context) -> Iterator[Violation]:
    """Only the sync agent reaches outside the cluster, and only the control plane."""
    names = [str(name) for name in context.option("syncAgent")]
    policies = list(of_type(resources, NETWORK_POLICY))
    workloads = list(of_type(resources, *_WORKLOADS))
    control_plane = _control_plane(context)
    for workload in workloads:
        if _is_named(workload, names):
            check = _check_agent(workload, policies, control_plane)
        else:
            check = _check_other(workload, policies, context, control_plane)
        for message in check:
            yield Violation(message, workload.urn)
    namespaces = [str(namespace) for namespace in context.option("defaultDenyNamespaces")]
    for namespace, workload in _default_deny_gaps(workloads, policies, namespaces):
        yield Violation(
            f"namespace {namespace} has no default-deny egress NetworkPolicy (podSelector {{}} "
            f"with policyTypes [Egress]); {short(workload)} and its neighbours can reach "
            "anywhere",
            workload.urn,
        )


def _vpc_cni_enforces(addon: Resource) -> bool:
    """Does this vpc-cni add-on turn on the VPC CNI's NetworkPolicy agent?"""
    raw = addon.props.get("configurationValues")
    if is_unknown(raw):
        return True
    try:
        values = json.loads(raw) if isinstance(raw, str) else {}
    except json.JSONDecodeError:
        return False
    return is_true(values.get("enableNetworkPolicy")) if isinstance(values, dict) else False


def network_policy_enforced(resources: Sequence[Resource], context: Context) -> Iterator[Violation]:
    """Every cluster enforces NetworkPolicy; without it the egress rules above are inert."""
    charts = {str(chart) for chart in context.option("enforcerCharts")}
    third_party = any(
        str(release.props.get("chart", "")).rsplit("/", 1)[-1] in charts
        for release in of_type(resources, HELM_RELEASE)
    )
    for cluster in of_type(resources, EKS_CLUSTER):
        names = [cluster.props.get("name"), cluster.id]
        addons = [
            addon
            for addon in of_type(resources, EKS_ADDON)
            if addon.props.get("addonName") == "vpc-cni"
            and refers_to(addon, "clusterName", addon.props.get("clusterName"), cluster, names)
        ]
        if not third_party and not any(_vpc_cni_enforces(addon) for addon in addons):
            yield Violation(
                f"{short(cluster)} does not enforce NetworkPolicy: no vpc-cni add-on with "
                'configurationValues {"enableNetworkPolicy": "true"} (nor a listed '
                "enforcer chart)",
                cluster.urn,
            )
    for cluster in of_type(resources, GKE_CLUSTER):
        enabled = get(cluster.props, "networkPolicy.enabled")
        dataplane = cluster.props.get("datapathProvider")
        if not (is_true(enabled) or dataplane == "ADVANCED_DATAPATH" or is_unknown(dataplane)):
            yield Violation(
                f"{short(cluster)} does not enforce NetworkPolicy (networkPolicy.enabled or "
                "datapathProvider ADVANCED_DATAPATH)",
                cluster.urn,
            )
    for cluster in of_type(resources, AKS_CLUSTER):
        engine = get(cluster.props, "networkProfile.networkPolicy")
        if engine not in _AKS_ENFORCERS and not is_unknown(engine):
            yield Violation(
                f"{short(cluster)} does not enforce NetworkPolicy "
                f"(networkProfile.networkPolicy is {engine or 'not set'})",
                cluster.urn,
            )


POLICIES: tuple[PolicySpec, ...] = (
    PolicySpec(
        name="egress-only-sync-agent",
        description=(
            "Only the sync agent may reach outside the cluster, and only the control plane."
        ),
        domain="residency",
        severity=Severity.CRITICAL,
        remediation=(
            "Give the sync agent a NetworkPolicy with policyTypes [Ingress, Egress], no "
            "ingress rules and egress only to DNS and controlPlane.egressCidrs; deny egress "
            "by default in the data-plane namespaces; never give another workload the "
            "control plane address or egress to it."
        ),
        validate_stack=egress_only_sync_agent,
        options={
            "syncAgent": {
                "type": "array",
                "items": {"type": "string"},
                "default": ["sync"],
                "description": "Workload names (or app.kubernetes.io/name) of the sync agent.",
            },
            "defaultDenyNamespaces": {
                "type": "array",
                "items": {"type": "string"},
                "default": ["metering"],
                "description": "Namespaces that must deny egress by default.",
            },
            "allowOpenEgress": {
                "type": "array",
                "items": {"type": "string"},
                "default": [],
                "description": "Workloads allowed an egress rule to any address (reviewed).",
            },
        },
    ),
    PolicySpec(
        name="network-policy-enforced",
        description="Every cluster enforces Kubernetes NetworkPolicy.",
        domain="residency",
        severity=Severity.CRITICAL,
        remediation=(
            "EKS: the vpc-cni add-on with configurationValues "
            '{"enableNetworkPolicy": "true"}; GKE: Dataplane V2 (datapathProvider '
            "ADVANCED_DATAPATH) or networkPolicy.enabled; AKS: networkProfile.networkPolicy "
            "azure, calico or cilium."
        ),
        validate_stack=network_policy_enforced,
        options={
            "enforcerCharts": {
                "type": "array",
                "items": {"type": "string"},
                "default": ["cilium", "tigera-operator"],
                "description": "Helm charts whose presence enforces NetworkPolicy on EKS.",
            }
        },
        mirrors=("CKV_AZURE_7",),
    ),
)
