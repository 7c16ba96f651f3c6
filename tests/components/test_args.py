"""Component arguments are validated at construction, before any child is declared."""

from __future__ import annotations

from ipaddress import IPv4Network
from typing import Any

import pytest

from components import versions
from components.aws.bucket import ArchiveBucketArgs
from components.aws.network import NetworkArgs
from components.azure.keyvault import KeyVaultArgs
from components.azure.storage import ArchiveStorageArgs
from components.k8s.clickhouse import ClickHouseArgs
from components.k8s.kafka import KafkaArgs
from components.k8s.network_policies import MeteringEgressArgs
from components.k8s.services import AppServiceArgs
from components.k8s.sync_agent import SyncAgentArgs, egress_rules


@pytest.mark.parametrize(
    ("factory", "message"),
    [
        (
            lambda: KafkaArgs(brokers=2, partitions=12, broker_volume="100Gi", prod=True),
            "at least 3",
        ),
        (
            lambda: ClickHouseArgs(shards=1, replicas=1, volume="100Gi", zones=("a",), prod=True),
            "at least 2",
        ),
        (lambda: ClickHouseArgs(shards=1, replicas=2, volume="100Gi", zones=(), prod=True), "zone"),
        (
            lambda: AppServiceArgs(
                command="ingest",
                release="1.0.0",
                replicas=4,
                max_replicas=2,
                environment={},
                prod=True,
            ),
            "max_replicas",
        ),
        (
            lambda: SyncAgentArgs(
                release="1.0.0",
                control_plane_url="https://cp",
                control_plane_port=443,
                environment_id="e",
                egress_cidrs=(),
                local_customer_data=True,
            ),
            "egress_cidrs",
        ),
        (lambda: MeteringEgressArgs(kube_api=(), object_store=()), "need rules"),
        (
            lambda: NetworkArgs(
                cidr=IPv4Network("10.0.0.0/16"), zones=(), region="us-east-1", tags={}
            ),
            "zone",
        ),
        (
            lambda: ArchiveBucketArgs(bucket_name="b", key_arn="k", retention_days=0, tags={}),
            "positive",
        ),
        (
            lambda: ArchiveStorageArgs(
                resource_group_name="rg",
                location="westeurope",
                account_name="not-alnum!",
                vault_id="v",
                vault_uri="u",
                key_name="k",
                subscription_id="s",
                retention_days=30,
                subnet_id="s",
                vnet_id="v",
                tags={},
            ),
            "letters and digits",
        ),
        (
            lambda: KeyVaultArgs(
                resource_group_name="rg",
                location="westeurope",
                vault_name="kv-name-that-is-far-too-long",
                tenant_id="t",
                subscription_id="s",
                deployer_object_id="o",
                tags={},
            ),
            "3-24",
        ),
    ],
)
def test_bad_arguments_are_refused(factory: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        factory()


def test_egress_rules_allow_dns_the_control_plane_and_in_cluster_clickhouse_only() -> None:
    rules = egress_rules((IPv4Network("198.51.100.0/24"),), 8443)
    assert [r["ports"] for r in rules] == [
        [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}],
        [{"protocol": "TCP", "port": 8443}],
        [{"protocol": "TCP", "port": 8123}],
    ]
    assert rules[1]["to"] == [{"ipBlock": {"cidr": "198.51.100.0/24"}}]
    assert all("ipBlock" not in peer for peer in rules[2]["to"])  # selectors: in-cluster only


def test_images_are_tagged_with_the_release() -> None:
    assert versions.app_image("1.2.3") == "ghcr.io/meterplane/meterplane:1.2.3"
    assert versions.flink_job_image("1.2.3") == "ghcr.io/meterplane/flink-job:1.2.3"
