"""VPC with one regional subnet (secondary ranges for pods and services) and Cloud NAT.

Nodes are private (no external IPs), so Cloud NAT is their only way out; the sync agent's
NetworkPolicy narrows that further to the control plane. A regional subnet serves every
zone of the region, so losing a zone loses no addresses. A private DNS zone points
``*.googleapis.com`` at ``private.googleapis.com`` (199.36.153.8/30, Private Google
Access), so Cloud Storage traffic has one fixed, private range that NetworkPolicies can
allow.
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Network

import pulumi
import pulumi_gcp as gcp


@dataclass(frozen=True)
class NetworkArgs:
    """Project, region and address plan."""

    project: str
    region: str
    cidr: IPv4Network
    labels: dict[str, str]

    def __post_init__(self) -> None:
        if self.cidr.prefixlen > 16:
            raise ValueError("NetworkArgs.cidr must be /16 or larger")


POD_RANGE = "pods"
PRIVATE_GOOGLE_ACCESS = "199.36.153.8/30"
_PRIVATE_GOOGLE_IPS = ["199.36.153.8", "199.36.153.9", "199.36.153.10", "199.36.153.11"]
SERVICE_RANGE = "services"


class Network(pulumi.ComponentResource):
    """The data plane's VPC and subnet."""

    network_id: pulumi.Output[str]
    subnet_id: pulumi.Output[str]

    def __init__(
        self, name: str, args: NetworkArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("meterplane:gcp:Network", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        nodes, services, *_ = args.cidr.subnets(new_prefix=20)
        # Pods get a /14 outside the VPC range: GKE needs far more pod IPs than node IPs.
        pods = IPv4Network(f"{args.cidr.network_address + (1 << 24) * 60}/14", strict=False)
        network = gcp.compute.Network(
            f"{name}-vpc",
            project=args.project,
            name=f"{name}-vpc",
            auto_create_subnetworks=False,
            routing_mode="REGIONAL",
            opts=child,
        )
        subnet = gcp.compute.Subnetwork(
            f"{name}-subnet",
            project=args.project,
            name=f"{name}-nodes",
            region=args.region,
            network=network.id,
            ip_cidr_range=str(nodes),
            private_ip_google_access=True,
            secondary_ip_ranges=[
                {"range_name": POD_RANGE, "ip_cidr_range": str(pods)},
                {"range_name": SERVICE_RANGE, "ip_cidr_range": str(services)},
            ],
            log_config={"aggregation_interval": "INTERVAL_5_MIN", "flow_sampling": 0.1},
            opts=child,
        )
        router = gcp.compute.Router(
            f"{name}-router",
            project=args.project,
            name=f"{name}-router",
            region=args.region,
            network=network.id,
            opts=child,
        )
        gcp.compute.RouterNat(
            f"{name}-nat",
            project=args.project,
            name=f"{name}-nat",
            region=args.region,
            router=router.name,
            nat_ip_allocate_option="AUTO_ONLY",
            source_subnetwork_ip_ranges_to_nat="ALL_SUBNETWORKS_ALL_IP_RANGES",
            log_config={"enable": True, "filter": "ERRORS_ONLY"},
            opts=child,
        )
        zone = gcp.dns.ManagedZone(
            f"{name}-googleapis",
            project=args.project,
            name=f"{name}-googleapis",
            dns_name="googleapis.com.",
            visibility="private",
            private_visibility_config={"networks": [{"network_url": network.id}]},
            labels=args.labels,
            opts=child,
        )
        gcp.dns.RecordSet(
            f"{name}-googleapis-a",
            project=args.project,
            managed_zone=zone.name,
            name="private.googleapis.com.",
            type="A",
            ttl=300,
            rrdatas=_PRIVATE_GOOGLE_IPS,
            opts=child,
        )
        gcp.dns.RecordSet(
            f"{name}-googleapis-cname",
            project=args.project,
            managed_zone=zone.name,
            name="*.googleapis.com.",
            type="CNAME",
            ttl=300,
            rrdatas=["private.googleapis.com."],
            opts=child,
        )
        self.network_id = network.id
        self.subnet_id = subnet.id
        self.register_outputs({"networkId": self.network_id, "subnetId": self.subnet_id})
