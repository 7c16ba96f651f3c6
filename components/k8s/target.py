"""What a cloud foundation hands to the on-cluster components (the only cloud seam)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import pulumi


@dataclass(frozen=True)
class EgressRule:
    """One TCP destination range that a NetworkPolicy may open."""

    cidr: str
    port: int


@dataclass(frozen=True)
class PodIdentity:
    """How a service account's pods pick up their cloud identity."""

    service_account_annotations: Mapping[str, pulumi.Input[str]] = field(default_factory=dict)
    pod_labels: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ClusterTarget:
    """The cluster and cloud facts the Kubernetes side needs; built by infra/<cloud>.py."""

    kubeconfig: pulumi.Output[str]
    zones: tuple[str, ...]
    storage_provisioner: str
    storage_parameters: Mapping[str, pulumi.Input[str]]
    archive_url: pulumi.Output[str]  # e.g. s3://bucket, gs://bucket, abfss://c@acct.dfs...
    archive_kms_key: pulumi.Output[str]
    identities: Mapping[str, PodIdentity]  # service account name -> identity
    # Where pods reach the API server, and the bucket plus the identity endpoint (private
    # endpoints inside the network, link-local metadata/identity agents).
    kube_api_egress: tuple[EgressRule, ...]
    object_store_egress: tuple[EgressRule, ...]
    flink_configuration: Mapping[str, pulumi.Input[str]] = field(default_factory=dict)
    flink_plugins: str = ""  # ENABLE_BUILT_IN_PLUGINS for the object store
