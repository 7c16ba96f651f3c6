"""Workload hardening: non-root, read-only root filesystem, resource limits, pinned images.

Applies to every container the stack declares: native workloads (Deployment, StatefulSet,
DaemonSet, Job, CronJob, Pod) and the pod templates of the engines' custom resources
(FlinkDeployment, ClickHouseInstallation, ClickHouseKeeperInstallation, KafkaNodePool).
Pods that operators create from their own defaults, and operators installed as Helm
releases, are outside what a preview can see; for those the chart version must be pinned.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from policies.core import (
    Context,
    PolicySpec,
    Resource,
    Severity,
    as_list,
    as_mapping,
    as_number,
    get,
    is_true,
    is_unknown,
    short,
)
from policies.redundancy import (
    CLICKHOUSE,
    CLICKHOUSE_KEEPER,
    DEPLOYMENT,
    KAFKA,
    KAFKA_NODE_POOL,
    STATEFUL_SET,
)

FLINK = "kubernetes:flink.apache.org/v1beta1:FlinkDeployment"
HELM_RELEASE = "kubernetes:helm.sh/v3:Release"
HELM_CHART = "kubernetes:helm.sh/v4:Chart"

_POD_TEMPLATE_PATHS = {
    DEPLOYMENT: ("spec.template.spec",),
    STATEFUL_SET: ("spec.template.spec",),
    "kubernetes:apps/v1:DaemonSet": ("spec.template.spec",),
    "kubernetes:apps/v1:ReplicaSet": ("spec.template.spec",),
    "kubernetes:batch/v1:Job": ("spec.template.spec",),
    "kubernetes:batch/v1:CronJob": ("spec.jobTemplate.spec.template.spec",),
    "kubernetes:core/v1:Pod": ("spec",),
    FLINK: (
        "spec.podTemplate.spec",
        "spec.jobManager.podTemplate.spec",
        "spec.taskManager.podTemplate.spec",
    ),
}


@dataclass(frozen=True)
class _Container:
    """One container with the pod-level settings it inherits."""

    where: str
    spec: Mapping[str, Any]
    pod: Mapping[str, Any]


def _pod_specs(resource: Resource) -> Iterator[tuple[str, Mapping[str, Any]]]:
    for path in _POD_TEMPLATE_PATHS.get(resource.type, ()):
        spec = get(resource.props, path)
        if isinstance(spec, Mapping):
            yield path, spec
    if resource.type in (CLICKHOUSE, CLICKHOUSE_KEEPER):
        for template in as_list(get(resource.props, "spec.templates.podTemplates")):
            spec = get(template, "spec")
            if isinstance(spec, Mapping):
                yield f"podTemplate {get(template, 'name', '?')}", spec


def containers(resource: Resource) -> Iterator[_Container]:
    """Every container and init container the resource declares."""
    for where, pod in _pod_specs(resource):
        for key in ("initContainers", "containers"):
            for container in as_list(pod.get(key)):
                if isinstance(container, Mapping):
                    name = container.get("name", "?")
                    yield _Container(f"{where} container {name}", container, pod)


def _security(container: _Container, key: str) -> Any:
    """A security setting: the container's, else the pod's (Kubernetes precedence)."""
    value = get(container.spec, f"securityContext.{key}")
    if value is None and key in ("runAsNonRoot", "runAsUser", "runAsGroup"):
        value = get(container.pod, f"securityContext.{key}")
    return value


def non_root_containers(resource: Resource, context: Context) -> Iterator[str]:
    """Containers run as non-root, without privilege escalation, with every capability dropped."""
    for container in containers(resource):
        problems: list[str] = []
        non_root = _security(container, "runAsNonRoot")
        user = as_number(_security(container, "runAsUser"))
        if user == 0:
            problems.append("runs as uid 0")
        elif not is_true(non_root) and user is None and not is_unknown(non_root):
            problems.append("may run as root (neither runAsNonRoot: true nor a non-zero runAsUser)")
        if _security(container, "allowPrivilegeEscalation") is not False:
            problems.append("allows privilege escalation")
        if is_true(_security(container, "privileged")):
            problems.append("is privileged")
        dropped = [str(cap).upper() for cap in as_list(_security(container, "capabilities.drop"))]
        if "ALL" not in dropped:
            problems.append("does not drop ALL capabilities")
        if problems:
            yield f"{short(resource)} {container.where} " + ", ".join(problems)


def read_only_root_filesystem(resource: Resource, context: Context) -> Iterator[str]:
    """Containers mount their root filesystem read-only."""
    for container in containers(resource):
        value = _security(container, "readOnlyRootFilesystem")
        if not is_true(value) and not is_unknown(value):
            yield f"{short(resource)} {container.where} has a writable root filesystem"


def _missing(resources: Mapping[str, Any], section: str, kinds: list[str]) -> list[str]:
    block = as_mapping(resources.get(section))
    return [f"{section}.{kind}" for kind in kinds if block.get(kind) in (None, "", 0)]


def resource_limits(resource: Resource, context: Context) -> Iterator[str]:
    """Containers declare the required limits and requests."""
    limits = [str(kind) for kind in context.option("requiredLimits")]
    requests = [str(kind) for kind in context.option("requiredRequests")]
    if resource.type == FLINK:
        # The operator derives both requests and limits of each pod from these blocks.
        for role in ("jobManager", "taskManager"):
            block = as_mapping(get(resource.props, f"spec.{role}.resource"))
            gaps = [kind for kind in ("cpu", "memory") if block.get(kind) in (None, "", 0)]
            if gaps:
                yield f"{short(resource)} spec.{role}.resource lacks {', '.join(gaps)}"
        return
    if resource.type == KAFKA_NODE_POOL:
        spec_resources = as_mapping(get(resource.props, "spec.resources"))
        gaps = _missing(spec_resources, "limits", limits) + _missing(
            spec_resources, "requests", requests
        )
        if gaps:
            yield f"{short(resource)} spec.resources lacks {', '.join(gaps)}"
        return
    for container in containers(resource):
        declared = as_mapping(container.spec.get("resources"))
        if is_unknown(container.spec.get("resources")):
            continue
        gaps = _missing(declared, "limits", limits) + _missing(declared, "requests", requests)
        if gaps:
            yield f"{short(resource)} {container.where} lacks {', '.join(gaps)}"


_DIGEST = re.compile(r"@sha256:[0-9a-f]{64}$")


def image_problem(image: object) -> str | None:
    """Why ``image`` is not pinned to an explicit version, or None when it is."""
    if is_unknown(image):
        return None
    if not isinstance(image, str) or not image:
        return "names no image"
    if _DIGEST.search(image):
        return None
    last = image.rsplit("/", 1)[-1]
    if ":" not in last:
        return f"image {image} has no tag (pulls latest)"
    tag = last.rsplit(":", 1)[1]
    if tag.lower() == "latest":
        return f"image {image} is tagged latest"
    if not any(char.isdigit() for char in tag):
        return f"image {image} tag {tag} is not a version"
    return None


def _resource_images(resource: Resource) -> Iterator[tuple[str, object]]:
    if resource.type == FLINK:
        yield "spec.image", get(resource.props, "spec.image")
    if resource.type == KAFKA and get(resource.props, "spec.kafka.image") is not None:
        yield "spec.kafka.image", get(resource.props, "spec.kafka.image")
    for container in containers(resource):
        image = container.spec.get("image")
        # Flink's podTemplate containers inherit spec.image; an absent image there is fine.
        if image is None and resource.type == FLINK:
            continue
        yield container.where, image


def image_pinned(resource: Resource, context: Context) -> Iterator[str]:
    """Images and charts are pinned to an explicit version (never ``latest``)."""
    if resource.type in (HELM_RELEASE, HELM_CHART):
        version = resource.props.get("version")
        if not is_unknown(version) and (not version or str(version).lower() == "latest"):
            yield f"{short(resource)} chart {resource.props.get('chart')} has no pinned version"
        return
    for where, image in _resource_images(resource):
        problem = image_problem(image)
        if problem:
            yield f"{short(resource)} {where} {problem}"


POLICIES: tuple[PolicySpec, ...] = (
    PolicySpec(
        name="non-root-containers",
        description="Containers run as non-root without privilege escalation or capabilities.",
        domain="hardening",
        severity=Severity.HIGH,
        remediation=(
            "Set securityContext runAsNonRoot: true (or a non-zero runAsUser), "
            "allowPrivilegeEscalation: false, capabilities.drop: [ALL], never privileged."
        ),
        validate_resource=non_root_containers,
        mirrors=("CKV_K8S_20", "CKV_K8S_23", "CKV_K8S_28", "CKV_K8S_37", "CKV_K8S_40"),
    ),
    PolicySpec(
        name="read-only-root-filesystem",
        description="Containers mount their root filesystem read-only.",
        domain="hardening",
        severity=Severity.MEDIUM,
        remediation=(
            "Set securityContext.readOnlyRootFilesystem: true and mount an emptyDir where "
            "the process must write (/tmp)."
        ),
        validate_resource=read_only_root_filesystem,
        mirrors=("CKV_K8S_22",),
    ),
    PolicySpec(
        name="resource-limits",
        description="Containers declare resource requests and limits.",
        domain="hardening",
        severity=Severity.MEDIUM,
        remediation=(
            "Set resources.requests.cpu/memory and resources.limits.memory on every "
            "container (Flink: jobManager/taskManager.resource)."
        ),
        validate_resource=resource_limits,
        options={
            "requiredLimits": {
                "type": "array",
                "items": {"type": "string", "enum": ["cpu", "memory", "ephemeral-storage"]},
                # CPU limits throttle latency-sensitive engines (ClickHouse, Kafka) under
                # CFS quota; memory limits are what protect neighbours. Add "cpu" to mirror
                # CKV_K8S_11 strictly.
                "default": ["memory"],
            },
            "requiredRequests": {
                "type": "array",
                "items": {"type": "string", "enum": ["cpu", "memory", "ephemeral-storage"]},
                "default": ["cpu", "memory"],
            },
        },
        mirrors=("CKV_K8S_11", "CKV_K8S_13"),
    ),
    PolicySpec(
        name="image-pinned",
        description="Images and Helm charts are pinned to an explicit version, never latest.",
        domain="hardening",
        severity=Severity.HIGH,
        remediation=(
            "Pin every image to the release's version tag (or a sha256 digest) and every "
            "Helm chart to a version."
        ),
        validate_resource=image_pinned,
        mirrors=("CKV_K8S_14", "CKV_K8S_43"),
    ),
)
