"""Residency policy: only the sync agent reaches outside the cluster, only the control plane."""

from __future__ import annotations

from typing import Any

from policytest_support import STACK, assert_level_override, messages, res

AGENT_LABELS = {"app.kubernetes.io/name": "sync"}
DNS_RULE = {
    "to": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}}}],
    "ports": [{"protocol": "UDP", "port": 53.0}, {"protocol": "TCP", "port": 53.0}],
}


def deployment(
    name: str, namespace: str, labels: dict[str, str], env: list[dict[str, str]] | None = None
) -> Any:
    container = {"name": name, "image": f"meterplane/{name}:0.1.0", "env": env or []}
    spec = {"template": {"metadata": {"labels": labels}, "spec": {"containers": [container]}}}
    return res(
        "kubernetes:apps/v1:Deployment",
        name,
        {"metadata": {"name": name, "namespace": namespace}, "spec": spec},
    )


def netpol(
    name: str,
    namespace: str,
    match: dict[str, str],
    types: list[str],
    egress: list[Any] | None = None,
    ingress: list[Any] | None = None,
) -> Any:
    spec: dict[str, Any] = {"podSelector": {"matchLabels": match}, "policyTypes": types}
    if egress is not None:
        spec["egress"] = egress
    if ingress is not None:
        spec["ingress"] = ingress
    return res(
        "kubernetes:networking.k8s.io/v1:NetworkPolicy",
        name,
        {"metadata": {"name": name, "namespace": namespace}, "spec": spec},
    )


AGENT = deployment(
    "sync",
    "shared",
    AGENT_LABELS,
    [{"name": "METERPLANE_CONTROL_PLANE_URL", "value": "https://sync.meterplane.example.com"}],
)
AGENT_POLICY = netpol(
    "sync",
    "shared",
    AGENT_LABELS,
    ["Ingress", "Egress"],
    egress=[
        DNS_RULE,
        {
            "to": [{"ipBlock": {"cidr": "198.51.100.0/24"}}],
            "ports": [{"protocol": "TCP", "port": 443.0}],
        },
    ],
    ingress=[],
)
INGEST = deployment("ingest", "metering", {"app.kubernetes.io/name": "ingest"})
DEFAULT_DENY = netpol(
    "default-deny",
    "metering",
    {},
    ["Egress"],
    egress=[DNS_RULE, {"to": [{"namespaceSelector": {}}]}],
)


def test_isolated_data_plane_passes() -> None:
    assert messages("egress-only-sync-agent", [AGENT, AGENT_POLICY, INGEST, DEFAULT_DENY]) == []


def test_agent_reaching_beyond_the_control_plane_fails() -> None:
    wide = netpol(
        "sync",
        "shared",
        AGENT_LABELS,
        ["Ingress", "Egress"],
        egress=[
            DNS_RULE,
            {"to": [{"ipBlock": {"cidr": "203.0.113.0/24"}}]},
            {"ports": [{"port": 443.0}]},
        ],
        ingress=[{"from": [{"podSelector": {}}]}],
    )
    found = messages("egress-only-sync-agent", [AGENT, wide, INGEST, DEFAULT_DENY])
    assert found == [
        "Deployment sync (sync agent) admits ingress through NetworkPolicy sync; "
        "the agent only dials out",
        "Deployment sync (sync agent) may reach 203.0.113.0/24, "
        "outside the control plane's egressCidrs",
        "Deployment sync (sync agent) may reach any address "
        "(an egress rule without peers or to 0.0.0.0/0)",
    ]


def test_other_workload_talking_to_the_control_plane_fails() -> None:
    rogue = deployment(
        "ingest",
        "metering",
        {"app.kubernetes.io/name": "ingest"},
        [{"name": "UPSTREAM", "value": "https://sync.meterplane.example.com"}],
    )
    opening = netpol(
        "ingest-out",
        "metering",
        {"app.kubernetes.io/name": "ingest"},
        ["Egress"],
        egress=[
            {"to": [{"ipBlock": {"cidr": "198.51.100.0/25"}}]},
            {"to": [{"ipBlock": {"cidr": "0.0.0.0/0"}}]},
        ],
    )
    found = messages("egress-only-sync-agent", [AGENT, AGENT_POLICY, rogue, opening, DEFAULT_DENY])
    assert found == [
        "Deployment ingest is configured with the control plane address (UPSTREAM); "
        "only the sync agent may talk to the control plane",
        "Deployment ingest is granted egress to the control plane range 198.51.100.0/25",
        "Deployment ingest is granted egress to any address; only the sync agent may",
    ]


def test_missing_network_policies_fail() -> None:
    found = messages("egress-only-sync-agent", [AGENT, INGEST])
    assert found == [
        "Deployment sync (sync agent) has no NetworkPolicy: "
        "it admits any ingress and reaches anywhere",
        "namespace metering has no default-deny egress NetworkPolicy (podSelector {} with "
        "policyTypes [Egress]); Deployment ingest and its neighbours can reach anywhere",
    ]


def test_without_stack_config_only_the_shape_is_checked() -> None:
    anywhere = netpol(
        "sync",
        "shared",
        AGENT_LABELS,
        ["Ingress", "Egress"],
        egress=[{"to": [{"ipBlock": {"cidr": "203.0.113.0/24"}}]}],
        ingress=[],
    )
    assert (
        messages("egress-only-sync-agent", [AGENT, anywhere, INGEST, DEFAULT_DENY], stack={}) == []
    )
    assert (
        messages("egress-only-sync-agent", [AGENT, anywhere, INGEST, DEFAULT_DENY], stack=STACK)
        != []
    )


def test_residency_options_and_level_override() -> None:
    open_archiver = deployment("archiver", "metering", {"app.kubernetes.io/name": "archiver"})
    opening = netpol(
        "archiver-out",
        "metering",
        {"app.kubernetes.io/name": "archiver"},
        ["Egress"],
        egress=[{"to": [{"ipBlock": {"cidr": "0.0.0.0/0"}}], "ports": [{"port": 443.0}]}],
    )
    resources = [AGENT, AGENT_POLICY, open_archiver, opening, DEFAULT_DENY]
    assert len(messages("egress-only-sync-agent", resources)) == 1
    # Allowed open egress must still carve the control plane out.
    assert messages("egress-only-sync-agent", resources, {"allowOpenEgress": ["archiver"]}) == [
        "Deployment archiver is granted egress to the control plane range 0.0.0.0/0"
    ]
    carved = netpol(
        "archiver-out",
        "metering",
        {"app.kubernetes.io/name": "archiver"},
        ["Egress"],
        egress=[{"to": [{"ipBlock": {"cidr": "0.0.0.0/0", "except": ["198.51.100.0/24"]}}]}],
    )
    resources = [AGENT, AGENT_POLICY, open_archiver, carved, DEFAULT_DENY]
    assert messages("egress-only-sync-agent", resources, {"allowOpenEgress": ["archiver"]}) == []
    assert (
        messages(
            "egress-only-sync-agent", [AGENT, AGENT_POLICY, INGEST], {"defaultDenyNamespaces": []}
        )
        == []
    )
    assert_level_override("egress-only-sync-agent", [AGENT, INGEST])


# --- network-policy-enforced -----------------------------------------------------------

EKS = res("aws:eks/cluster:Cluster", "eks", {"name": "acme-prod"}, id="acme-prod")


def vpc_cni(values: object) -> Any:
    props = {"addonName": "vpc-cni", "clusterName": "acme-prod"}
    if values is not None:
        props["configurationValues"] = values
    return res("aws:eks/addon:Addon", "vpc-cni", props)


def test_enforcing_clusters_pass() -> None:
    resources = [
        EKS,
        vpc_cni('{"enableNetworkPolicy": "true"}'),
        res("gcp:container/cluster:Cluster", "gke", {"datapathProvider": "ADVANCED_DATAPATH"}),
        res("gcp:container/cluster:Cluster", "gke-calico", {"networkPolicy": {"enabled": True}}),
        res(
            "azure-native:containerservice:ManagedCluster",
            "aks",
            {"networkProfile": {"networkPolicy": "cilium"}},
        ),
    ]
    assert messages("network-policy-enforced", resources) == []


def test_non_enforcing_clusters_fail() -> None:
    resources = [
        EKS,
        vpc_cni('{"enableNetworkPolicy": "false"}'),
        res("gcp:container/cluster:Cluster", "gke", {"datapathProvider": "LEGACY_DATAPATH"}),
        res(
            "azure-native:containerservice:ManagedCluster",
            "aks",
            {"networkProfile": {"networkPolicy": "none"}},
        ),
    ]
    found = messages("network-policy-enforced", resources)
    assert [message.split(" does not ")[0] for message in found] == [
        "Cluster eks",
        "Cluster gke",
        "ManagedCluster aks",
    ]
    assert "networkProfile.networkPolicy is none" in found[2]


def test_missing_addon_or_settings_fail() -> None:
    resources = [EKS, vpc_cni(None), res("azure-native:containerservice:ManagedCluster", "aks", {})]
    found = messages("network-policy-enforced", resources)
    assert found[0].startswith("Cluster eks does not enforce NetworkPolicy: no vpc-cni add-on")
    assert (
        found[1] == "ManagedCluster aks does not enforce NetworkPolicy "
        "(networkProfile.networkPolicy is not set)"
    )


def test_enforcer_chart_option_and_level_override() -> None:
    calico = res(
        "kubernetes:helm.sh/v3:Release", "calico", {"chart": "tigera-operator", "version": "3.29.0"}
    )
    assert messages("network-policy-enforced", [EKS, calico]) == []
    assert messages("network-policy-enforced", [EKS, calico], {"enforcerCharts": ["cilium"]}) != []
    assert_level_override("network-policy-enforced", [EKS])
