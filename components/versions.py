"""Every pinned version the components deploy, in one place.

Operator charts, the engine versions they run and the custom-resource API versions that
match them are upgraded together: bump a chart here, check its release notes for the API
version it serves, and the whole fleet moves on the next rollout wave. Nothing else in
``components/`` or ``infra/`` spells a version or an image tag.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class HelmChart:
    """A pinned Helm chart: where it comes from and which version is installed."""

    chart: str
    version: str
    repository: str | None = None  # None for OCI charts, whose reference is in ``chart``


# --- operators (Helm) -----------------------------------------------------------------
CERT_MANAGER = HelmChart(
    chart="cert-manager", version="v1.19.1", repository="https://charts.jetstack.io"
)
STRIMZI = HelmChart(chart="oci://quay.io/strimzi-helm/strimzi-kafka-operator", version="1.0.0")
FLINK_OPERATOR = HelmChart(
    chart="flink-kubernetes-operator",
    # 1.15 supports Flink 2.2 (the version the job and its image are built and tested on).
    version="1.15.0",
    repository="https://downloads.apache.org/flink/flink-kubernetes-operator-1.15.0/",
)
CLICKHOUSE_OPERATOR = HelmChart(
    chart="altinity-clickhouse-operator", version="0.25.5", repository="https://helm.altinity.com"
)

# --- custom-resource API versions served by the charts above ---------------------------
STRIMZI_API = "kafka.strimzi.io/v1"
FLINK_API = "flink.apache.org/v1beta1"
CLICKHOUSE_API = "clickhouse.altinity.com/v1"
CLICKHOUSE_KEEPER_API = "clickhouse-keeper.altinity.com/v1"

# --- engine versions run by the operators ---------------------------------------------
KAFKA_VERSION = "4.1.0"
# Must equal the PyFlink pin of app/meterplane_flink/requirements.txt and the Flink-job
# image's base (docker/Dockerfile.flink-job): tests/release checks all three agree.
FLINK_VERSION = "2.2.1"
# The FlinkDeployment ``flinkVersion`` enum spells the minor version this way.
FLINK_VERSION_ENUM = "v2_2"
CLICKHOUSE_IMAGE = "clickhouse/clickhouse-server:25.8.10.7"
CLICKHOUSE_KEEPER_IMAGE = "clickhouse/clickhouse-keeper:25.8.10.7"

# --- Meterplane's own images (tag = the stack's release.version) -----------------------
APP_IMAGE_REPOSITORY = "ghcr.io/meterplane/meterplane"
FLINK_JOB_IMAGE_REPOSITORY = "ghcr.io/meterplane/flink-job"

# --- managed Kubernetes -----------------------------------------------------------------
EKS_VERSION = "1.33"
GKE_RELEASE_CHANNEL = "REGULAR"
AKS_VERSION = "1.33"


def app_image(version: str) -> str:
    """The app image for a release: every service container runs it."""
    return f"{APP_IMAGE_REPOSITORY}:{version}"


def flink_job_image(version: str) -> str:
    """The PyFlink job image for a release (Flink plus the aggregation job)."""
    return f"{FLINK_JOB_IMAGE_REPOSITORY}:{version}"
