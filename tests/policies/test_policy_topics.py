"""Topic policies: partitions never decrease; topics only through KafkaTopic."""

from __future__ import annotations

from typing import Any

from meterplane.plan import render_stack
from policies.topics import KAFKA, KAFKA_TOPIC, deployed_partitions
from tests.policies.policytest_support import assert_level_override, messages, res

POLICY = "kafka-partitions-never-decrease"


def topic(partitions: Any, name: str = "events", **spec: Any) -> Any:
    body = {"replicas": 3.0, **spec}
    if partitions is not None:
        body["partitions"] = partitions
    return res(
        KAFKA_TOPIC,
        f"acme-prod-kafka-topic-{name}",
        {"metadata": {"name": name, "namespace": "metering"}, "spec": body},
    )


def test_same_or_more_partitions_pass() -> None:
    deployed = {"deployedPartitions": {"metering/events": 24}}
    assert messages(POLICY, [topic(24.0)], deployed) == []
    assert messages(POLICY, [topic(48.0)], deployed) == []


def test_fewer_partitions_than_deployed_fail() -> None:
    found = messages(POLICY, [topic(12.0)], {"deployedPartitions": {"metering/events": 24}})
    assert found == [
        "KafkaTopic acme-prod-kafka-topic-events (metering/events) would go from 24 to 12 "
        "partitions; Kafka cannot remove partitions"
    ]


def test_topic_name_override_is_the_key() -> None:
    renamed = topic(6.0, name="events-cr", topicName="events")
    assert messages(POLICY, [renamed], {"deployedPartitions": {"metering/events": 8}})


def test_missing_partitions_fail_and_no_baseline_is_not_a_violation() -> None:
    assert messages(POLICY, [topic(None)]) == [
        "KafkaTopic acme-prod-kafka-topic-events does not set spec.partitions "
        "(the default could shrink it)"
    ]
    assert messages(POLICY, [topic(1.0)]) == []  # a new stack: nothing deployed yet


def test_config_override_levels() -> None:
    assert_level_override(POLICY, [topic(None)])


def test_deployed_partitions_from_a_plan_or_state() -> None:
    pairs = [
        (
            KAFKA_TOPIC,
            {"metadata": {"name": "events", "namespace": "metering"}, "spec": {"partitions": 24.0}},
        ),
        (
            KAFKA_TOPIC,
            {
                "metadata": {"name": "c", "namespace": "metering"},
                "spec": {"topicName": "counters", "partitions": 6},
            },
        ),
        (KAFKA, {"spec": {}}),
    ]
    assert deployed_partitions(pairs) == {"metering/events": 24, "metering/counters": 6}


def kafka(config: dict[str, Any], operator: bool = True) -> Any:
    spec: dict[str, Any] = {"kafka": {"config": config}}
    if operator:
        spec["entityOperator"] = {"topicOperator": {}}
    return res(KAFKA, "acme-prod-kafka-cluster", {"spec": spec})


def test_topics_declared_passes_and_fails() -> None:
    assert messages("kafka-topics-declared", [kafka({"auto.create.topics.enable": False})]) == []
    found = messages("kafka-topics-declared", [kafka({}, operator=False)])
    assert found == [
        "Kafka acme-prod-kafka-cluster does not set spec.kafka.config "
        "auto.create.topics.enable: false (clients could create topics no KafkaTopic declares)",
        "Kafka acme-prod-kafka-cluster has no spec.entityOperator.topicOperator (KafkaTopic inert)",
    ]
    assert messages("kafka-topics-declared", [kafka({"auto.create.topics.enable": "true"})])


def test_topics_declared_config_override_levels() -> None:
    assert_level_override("kafka-topics-declared", [kafka({})])


def test_the_repository_stacks_declare_their_topics() -> None:
    rendered = render_stack("acme-dev")
    resources = [
        res(r.type, r.name, r.inputs) for r in rendered.resources if r.type in (KAFKA, KAFKA_TOPIC)
    ]
    assert len(resources) >= 3
    assert messages("kafka-topics-declared", resources) == []
    current = deployed_partitions((r.type, r.props) for r in resources)
    assert messages(POLICY, resources, {"deployedPartitions": current}) == []
    shrunk = {k: v + 1 for k, v in current.items()}
    assert len(messages(POLICY, resources, {"deployedPartitions": shrunk})) == len(current)
