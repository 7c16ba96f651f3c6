"""VPC with a public and a private subnet per zone and one NAT gateway per zone.

Nodes live only in private subnets; the public subnets hold nothing but NAT gateways.
One NAT per zone means losing a zone never cuts the other zones' egress (the sync agent's
only path to the control plane). S3 is reached through an interface endpoint with private
DNS, so the archive's traffic stays inside the VPC and NetworkPolicies can allow it by the
VPC's range instead of the internet. Not managed here: peering and transit, which
customers usually own.
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Network

import pulumi
import pulumi_aws as aws


@dataclass(frozen=True)
class NetworkArgs:
    """Address plan and zones of the VPC."""

    cidr: IPv4Network
    zones: tuple[str, ...]
    region: str
    tags: dict[str, str]

    def __post_init__(self) -> None:
        if not self.zones:
            raise ValueError("NetworkArgs.zones must name at least one zone")


class Network(pulumi.ComponentResource):
    """The data plane's VPC."""

    vpc_id: pulumi.Output[str]
    private_subnet_ids: dict[str, pulumi.Output[str]]

    def __init__(
        self, name: str, args: NetworkArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("meterplane:aws:Network", name, None, opts)
        self._name = name
        self._args = args
        # /20 per subnet: private subnets carry pod IPs (VPC CNI), so they get the room.
        subnets = list(args.cidr.subnets(new_prefix=20))
        self.vpc = aws.ec2.Vpc(
            f"{name}-vpc",
            cidr_block=str(args.cidr),
            enable_dns_hostnames=True,
            enable_dns_support=True,
            tags={**args.tags, "Name": f"{name}-vpc"},
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.vpc_id = self.vpc.id
        igw = aws.ec2.InternetGateway(
            f"{name}-igw",
            vpc_id=self.vpc.id,
            tags=args.tags,
            opts=pulumi.ResourceOptions(parent=self),
        )
        public_rt = aws.ec2.RouteTable(
            f"{name}-public",
            vpc_id=self.vpc.id,
            routes=[{"cidr_block": "0.0.0.0/0", "gateway_id": igw.id}],
            tags=args.tags,
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.private_subnet_ids = {}
        for index, zone in enumerate(args.zones):
            self.private_subnet_ids[zone] = self._build_zone(
                index, zone, subnets[index], subnets[8 + index], public_rt
            )
        self._build_s3_endpoint()
        self.register_outputs(
            {"vpcId": self.vpc_id, "privateSubnetIds": list(self.private_subnet_ids.values())}
        )

    def _build_s3_endpoint(self) -> None:
        child = pulumi.ResourceOptions(parent=self)
        group = aws.ec2.SecurityGroup(
            f"{self._name}-s3-endpoint",
            vpc_id=self.vpc.id,
            description="HTTPS from the VPC to the S3 interface endpoint",
            ingress=[
                {
                    "protocol": "tcp",
                    "from_port": 443,
                    "to_port": 443,
                    "cidr_blocks": [str(self._args.cidr)],
                }
            ],
            tags=self._args.tags,
            opts=child,
        )
        aws.ec2.VpcEndpoint(
            f"{self._name}-s3",
            vpc_id=self.vpc.id,
            service_name=f"com.amazonaws.{self._args.region}.s3",
            vpc_endpoint_type="Interface",
            subnet_ids=list(self.private_subnet_ids.values()),
            security_group_ids=[group.id],
            private_dns_enabled=True,
            dns_options={"private_dns_only_for_inbound_resolver_endpoint": False},
            tags=self._args.tags,
            opts=child,
        )

    def _build_zone(
        self,
        index: int,
        zone: str,
        private_cidr: IPv4Network,
        public_cidr: IPv4Network,
        public_rt: aws.ec2.RouteTable,
    ) -> pulumi.Output[str]:
        name, tags = self._name, self._args.tags
        child = pulumi.ResourceOptions(parent=self)
        public = aws.ec2.Subnet(
            f"{name}-public-{index}",
            vpc_id=self.vpc.id,
            cidr_block=str(public_cidr),
            availability_zone=zone,
            map_public_ip_on_launch=False,
            tags={**tags, "kubernetes.io/role/elb": "1"},
            opts=child,
        )
        aws.ec2.RouteTableAssociation(
            f"{name}-public-{index}", subnet_id=public.id, route_table_id=public_rt.id, opts=child
        )
        eip = aws.ec2.Eip(f"{name}-nat-{index}", domain="vpc", tags=tags, opts=child)
        nat = aws.ec2.NatGateway(
            f"{name}-nat-{index}",
            allocation_id=eip.id,
            subnet_id=public.id,
            tags=tags,
            opts=child,
        )
        private = aws.ec2.Subnet(
            f"{name}-private-{index}",
            vpc_id=self.vpc.id,
            cidr_block=str(private_cidr),
            availability_zone=zone,
            tags={**tags, "kubernetes.io/role/internal-elb": "1"},
            opts=child,
        )
        private_rt = aws.ec2.RouteTable(
            f"{name}-private-{index}",
            vpc_id=self.vpc.id,
            routes=[{"cidr_block": "0.0.0.0/0", "nat_gateway_id": nat.id}],
            tags=tags,
            opts=child,
        )
        aws.ec2.RouteTableAssociation(
            f"{name}-private-{index}",
            subnet_id=private.id,
            route_table_id=private_rt.id,
            opts=child,
        )
        subnet_id: pulumi.Output[str] = private.id
        return subnet_id
