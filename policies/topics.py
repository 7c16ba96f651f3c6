"""Kafka topics: declared only through KafkaTopic, and their partitions never decrease.

Ingest keys every record by customer, so a topic's partition count fixes which partition
(and which Flink subtask's state) each customer lives on. Kafka cannot take partitions
away, and Strimzi's topic operator refuses to: a KafkaTopic whose ``spec.partitions``
went down stays NotReady while the cluster keeps the old count, so the repository and the
cluster disagree from then on. A change that would lower it — typically a smaller
``meterplane:throughput`` re-deriving the sizing — is refused here, in review and at apply
time, instead.

CrossGuard shows a policy only the desired state, so what is deployed arrives as the
policy's ``deployedPartitions`` option (``{"<namespace>/<topic>": partitions}``):
``meterplane rollout`` fills it from the stack's state before every ``pulumi up``
(:func:`deployed_partitions`), and reviewers pass the same shape to ``policy-check
--config`` built from the base branch's plan. Without a baseline the rule still requires
every topic to state its partitions, so no default can shrink one silently.

Topics only through KafkaTopic: the Kafka cluster must not create topics on first use
(``auto.create.topics.enable: false``) and must run Strimzi's topic operator, so the only
way a topic comes into being or changes is a reviewed KafkaTopic.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from policies.core import (
    Context,
    PolicySpec,
    Resource,
    Severity,
    as_mapping,
    as_number,
    get,
    is_unknown,
    short,
)

KAFKA = "kubernetes:kafka.strimzi.io/v1:Kafka"
KAFKA_TOPIC = "kubernetes:kafka.strimzi.io/v1:KafkaTopic"


def topic_key(props: Mapping[str, Any]) -> str:
    """``<namespace>/<topic>``: ``spec.topicName`` when set (Strimzi's rule), else the name."""
    namespace = get(props, "metadata.namespace") or "default"
    name = get(props, "spec.topicName") or get(props, "metadata.name") or "?"
    return f"{namespace}/{name}"


def deployed_partitions(resources: Iterable[tuple[str, Mapping[str, Any]]]) -> dict[str, int]:
    """Partitions per topic from (type token, inputs) pairs of a deployed state or plan."""
    found: dict[str, int] = {}
    for kind, props in resources:
        if kind != KAFKA_TOPIC:
            continue
        partitions = as_number(get(props, "spec.partitions"))
        if partitions is not None:
            found[topic_key(props)] = int(partitions)
    return found


def partitions_never_decrease(resource: Resource, context: Context) -> Iterator[str]:
    """A KafkaTopic states its partitions, and never fewer than are deployed."""
    if resource.type != KAFKA_TOPIC:
        return
    value = get(resource.props, "spec.partitions")
    if is_unknown(value):
        return
    partitions = as_number(value)
    if partitions is None:
        yield f"{short(resource)} does not set spec.partitions (the default could shrink it)"
        return
    key = topic_key(resource.props)
    deployed = as_mapping(context.option("deployedPartitions")).get(key)
    if deployed is not None and partitions < float(deployed):
        yield (
            f"{short(resource)} ({key}) would go from {int(deployed)} to {int(partitions)} "
            "partitions; Kafka cannot remove partitions"
        )


def topics_declared(resource: Resource, context: Context) -> Iterator[str]:
    """The Kafka cluster creates no topic by itself and runs the topic operator."""
    if resource.type != KAFKA:
        return
    auto_create = get(resource.props, "spec.kafka.config", {})
    value = as_mapping(auto_create).get("auto.create.topics.enable")
    if not is_unknown(value) and value not in (False, "false"):
        yield (
            f"{short(resource)} does not set spec.kafka.config auto.create.topics.enable: false "
            "(clients could create topics no KafkaTopic declares)"
        )
    operator = get(resource.props, "spec.entityOperator.topicOperator")
    if operator is None:
        yield f"{short(resource)} has no spec.entityOperator.topicOperator (KafkaTopic inert)"


POLICIES: tuple[PolicySpec, ...] = (
    PolicySpec(
        name="kafka-partitions-never-decrease",
        description="A KafkaTopic sets its partitions and never lowers them.",
        domain="topics",
        severity=Severity.HIGH,
        remediation=(
            "Keep spec.partitions at or above the deployed count (raise throughput-derived "
            "sizing, never lower it); to shrink a topic, create a new one and migrate."
        ),
        validate_resource=partitions_never_decrease,
        options={
            "deployedPartitions": {
                "type": "object",
                "additionalProperties": {"type": "integer", "minimum": 1},
                "default": {},
                "description": "Partitions on the cluster now, by '<namespace>/<topic>'.",
            }
        },
    ),
    PolicySpec(
        name="kafka-topics-declared",
        description="Topics exist only through KafkaTopic: no auto-creation, topic operator on.",
        domain="topics",
        severity=Severity.MEDIUM,
        remediation=(
            "Set spec.kafka.config auto.create.topics.enable: false and "
            "spec.entityOperator.topicOperator: {} on the Kafka resource."
        ),
        validate_resource=topics_declared,
    ),
)
