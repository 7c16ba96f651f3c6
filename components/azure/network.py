"""Virtual network with one node subnet (Azure CNI overlay: pod IPs do not use it).

Azure subnets are regional and span every zone, so one subnet serves nodes in zones 1-3.
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Network

import pulumi
from pulumi_azure_native import network


@dataclass(frozen=True)
class NetworkArgs:
    """Resource group, location and address plan."""

    resource_group_name: pulumi.Input[str]
    location: str
    cidr: IPv4Network
    tags: dict[str, str]


class Network(pulumi.ComponentResource):
    """The data plane's VNet and node subnet."""

    subnet_id: pulumi.Output[str]
    vnet_id: pulumi.Output[str]

    def __init__(
        self, name: str, args: NetworkArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("meterplane:azure:Network", name, None, opts)
        nodes = next(args.cidr.subnets(new_prefix=20))
        vnet = network.VirtualNetwork(
            f"{name}-vnet",
            resource_group_name=args.resource_group_name,
            virtual_network_name=f"{name}-vnet",
            location=args.location,
            address_space={"address_prefixes": [str(args.cidr)]},
            tags=args.tags,
            opts=pulumi.ResourceOptions(parent=self, ignore_changes=["subnets"]),
        )
        subnet = network.Subnet(
            f"{name}-nodes",
            resource_group_name=args.resource_group_name,
            virtual_network_name=vnet.name,
            subnet_name="nodes",
            address_prefix=str(nodes),
            default_outbound_access=False,
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.subnet_id = subnet.id
        self.vnet_id = vnet.id
        self.register_outputs({"subnetId": self.subnet_id, "vnetId": self.vnet_id})
