"""EKS with a private API endpoint, KMS-encrypted secrets and one node group per zone.

EBS volumes are bound to one zone, so a node group spanning zones could leave a Kafka or
ClickHouse pod unschedulable next to its volume; one group per zone lets the autoscaler
add a node exactly where the volume is. The EBS CSI driver and the Pod Identity agent are
EKS add-ons so AWS patches them. Not managed here: who may administer the cluster
(access entries belong to the customer's platform team).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from components import versions


def _assume_role_policy(service: str) -> str:
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Principal": {"Service": service},
                    "Action": ["sts:AssumeRole", "sts:TagSession"],
                }
            ],
        }
    )


@dataclass(frozen=True)
class ClusterArgs:
    """Placement, encryption key and node sizing of the cluster."""

    subnet_ids: dict[str, pulumi.Output[str]]  # zone -> private subnet
    key_arn: pulumi.Input[str]
    region: str
    instance_type: str
    nodes_per_zone: int
    max_nodes_per_zone: int
    tags: dict[str, str]

    def __post_init__(self) -> None:
        if self.nodes_per_zone < 1 or self.max_nodes_per_zone < self.nodes_per_zone:
            raise ValueError("ClusterArgs: need 1 <= nodes_per_zone <= max_nodes_per_zone")


class Cluster(pulumi.ComponentResource):
    """An EKS cluster ready for stateful workloads."""

    name: pulumi.Output[str]
    kubeconfig: pulumi.Output[str]

    def __init__(
        self, name: str, args: ClusterArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("meterplane:aws:Cluster", name, None, opts)
        self._name = name
        self._args = args
        self.cluster = self._build_control_plane()
        self.name = self.cluster.name
        node_role = self._build_node_role()
        self.node_groups = [
            self._build_node_group(index, zone, subnet, node_role)
            for index, (zone, subnet) in enumerate(args.subnet_ids.items())
        ]
        self._build_addons()
        self.kubeconfig = pulumi.Output.secret(
            pulumi.Output.all(
                self.cluster.name,
                self.cluster.endpoint,
                self.cluster.certificate_authority.apply(lambda ca: ca.data or ""),
            ).apply(lambda a: _kubeconfig(a[0], a[1], a[2], args.region))
        )
        self.register_outputs({"name": self.name, "kubeconfig": self.kubeconfig})

    def _build_control_plane(self) -> aws.eks.Cluster:
        name = self._name
        role = aws.iam.Role(
            f"{name}-cluster",
            assume_role_policy=_assume_role_policy("eks.amazonaws.com"),
            tags=self._args.tags,
            opts=pulumi.ResourceOptions(parent=self),
        )
        attachment = aws.iam.RolePolicyAttachment(
            f"{name}-cluster-policy",
            role=role.name,
            policy_arn="arn:aws:iam::aws:policy/AmazonEKSClusterPolicy",
            opts=pulumi.ResourceOptions(parent=self),
        )
        return aws.eks.Cluster(
            f"{name}-eks",
            version=versions.EKS_VERSION,
            role_arn=role.arn,
            vpc_config={
                "subnet_ids": list(self._args.subnet_ids.values()),
                "endpoint_private_access": True,
                "endpoint_public_access": False,
            },
            encryption_config={
                "provider": {"key_arn": self._args.key_arn},
                "resources": ["secrets"],
            },
            access_config={
                "authentication_mode": "API",
                "bootstrap_cluster_creator_admin_permissions": True,
            },
            enabled_cluster_log_types=["api", "audit", "authenticator"],
            tags=self._args.tags,
            opts=pulumi.ResourceOptions(parent=self, depends_on=[attachment]),
        )

    def _build_node_role(self) -> aws.iam.Role:
        role = aws.iam.Role(
            f"{self._name}-node",
            assume_role_policy=_assume_role_policy("ec2.amazonaws.com"),
            tags=self._args.tags,
            opts=pulumi.ResourceOptions(parent=self),
        )
        for policy in (
            "AmazonEKSWorkerNodePolicy",
            "AmazonEKS_CNI_Policy",
            "AmazonEC2ContainerRegistryReadOnly",
        ):
            aws.iam.RolePolicyAttachment(
                f"{self._name}-node-{policy}",
                role=role.name,
                policy_arn=f"arn:aws:iam::aws:policy/{policy}",
                opts=pulumi.ResourceOptions(parent=self),
            )
        return role

    def _build_node_group(
        self, index: int, zone: str, subnet: pulumi.Output[str], role: aws.iam.Role
    ) -> aws.eks.NodeGroup:
        args = self._args
        return aws.eks.NodeGroup(
            f"{self._name}-nodes-{index}",
            cluster_name=self.cluster.name,
            node_role_arn=role.arn,
            subnet_ids=[subnet],
            instance_types=[args.instance_type],
            ami_type="AL2023_x86_64_STANDARD",
            scaling_config={
                "desired_size": args.nodes_per_zone,
                "min_size": args.nodes_per_zone,
                "max_size": args.max_nodes_per_zone,
            },
            update_config={"max_unavailable": 1},
            labels={"meterplane.io/zone": zone},
            tags={**args.tags, "topology.kubernetes.io/zone": zone},
            opts=pulumi.ResourceOptions(parent=self),
        )

    def _build_addons(self) -> None:
        name, child = self._name, pulumi.ResourceOptions(parent=self)
        # The VPC CNI enforces NetworkPolicy only when asked to; without it the sync
        # agent's egress rules would be inert.
        aws.eks.Addon(
            f"{name}-vpc-cni",
            cluster_name=self.cluster.name,
            addon_name="vpc-cni",
            configuration_values=json.dumps({"enableNetworkPolicy": "true"}),
            resolve_conflicts_on_update="OVERWRITE",
            tags=self._args.tags,
            opts=child,
        )
        agent = aws.eks.Addon(
            f"{name}-pod-identity-agent",
            cluster_name=self.cluster.name,
            addon_name="eks-pod-identity-agent",
            tags=self._args.tags,
            opts=pulumi.ResourceOptions(parent=self, depends_on=self.node_groups),
        )
        csi_role = aws.iam.Role(
            f"{name}-ebs-csi",
            assume_role_policy=_assume_role_policy("pods.eks.amazonaws.com"),
            tags=self._args.tags,
            opts=child,
        )
        aws.iam.RolePolicyAttachment(
            f"{name}-ebs-csi",
            role=csi_role.name,
            policy_arn="arn:aws:iam::aws:policy/service-role/AmazonEBSCSIDriverPolicy",
            opts=child,
        )
        # Volumes are encrypted with the customer key, so the driver must use it.
        aws.iam.RolePolicy(
            f"{name}-ebs-csi-kms",
            role=csi_role.name,
            policy=pulumi.Output.from_input(self._args.key_arn).apply(
                lambda arn: json.dumps(
                    {
                        "Version": "2012-10-17",
                        "Statement": [
                            {
                                "Effect": "Allow",
                                "Action": [
                                    "kms:CreateGrant",
                                    "kms:Decrypt",
                                    "kms:DescribeKey",
                                    "kms:Encrypt",
                                    "kms:GenerateDataKeyWithoutPlaintext",
                                    "kms:ReEncrypt*",
                                ],
                                "Resource": [arn],
                            }
                        ],
                    }
                )
            ),
            opts=child,
        )
        aws.eks.Addon(
            f"{name}-ebs-csi",
            cluster_name=self.cluster.name,
            addon_name="aws-ebs-csi-driver",
            tags=self._args.tags,
            pod_identity_associations=[
                {"role_arn": csi_role.arn, "service_account": "ebs-csi-controller-sa"}
            ],
            opts=pulumi.ResourceOptions(parent=self, depends_on=[agent]),
        )


def _kubeconfig(name: str, endpoint: str, ca_data: str, region: str) -> str:
    """A kubeconfig that authenticates with ``aws eks get-token`` (no static secret)."""
    return json.dumps(
        {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": name,
                    "cluster": {"server": endpoint, "certificate-authority-data": ca_data},
                }
            ],
            "contexts": [{"name": name, "context": {"cluster": name, "user": name}}],
            "current-context": name,
            "users": [
                {
                    "name": name,
                    "user": {
                        "exec": {
                            "apiVersion": "client.authentication.k8s.io/v1beta1",
                            "command": "aws",
                            "args": [
                                "eks",
                                "get-token",
                                "--cluster-name",
                                name,
                                "--region",
                                region,
                            ],
                        }
                    },
                }
            ],
        }
    )
