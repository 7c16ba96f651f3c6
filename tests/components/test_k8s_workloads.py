"""On-cluster components for every cloud, asserted on the rendered stacks under Pulumi mocks."""

from __future__ import annotations

from ipaddress import ip_network
from typing import Any

import kubernetes_validate
import pulumi
import pytest

from components import versions
from components.k8s import names
from components.k8s.network_policies import KUBE_API_LABEL, OBJECT_STORE_LABEL
from meterplane.plan._engine import SECRET_PLACEHOLDER
from meterplane.plan.model import RenderedResource, RenderedStack
from tests.infra.harness import DEV_STACK, STACKS, Rendered, check, k8s_objects, one, rendered

ALL_STACKS = [*STACKS.values(), DEV_STACK]
PROD_STACKS = list(STACKS.values())
CORE_KINDS = (
    "Deployment",
    "Service",
    "NetworkPolicy",
    "PodDisruptionBudget",
    "HorizontalPodAutoscaler",
    "CronJob",
    "StorageClass",
    "Namespace",
    "ServiceAccount",
    "PersistentVolumeClaim",
    "Role",
    "RoleBinding",
)


@pytest.fixture(params=ALL_STACKS)
def stack(request: pytest.FixtureRequest) -> Rendered:
    return rendered(request.param)


@pytest.fixture(params=PROD_STACKS)
def prod_stack(request: pytest.FixtureRequest) -> Rendered:
    return rendered(request.param)


def _cr(view: RenderedStack, kind: str, name: str | None = None) -> RenderedResource:
    found = [
        r for r in k8s_objects(view, kind) if name is None or r.inputs["metadata"]["name"] == name
    ]
    assert len(found) == 1, (view.stack, kind, name, len(found))
    return found[0]


def _ints(value: Any) -> Any:
    """The engine's wire format makes every number a float; manifests carry integers."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: _ints(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_ints(v) for v in value]
    return value


@pulumi.runtime.test
def test_kafka_replication_rack_awareness_and_spread(prod_stack: Rendered) -> Any:
    view, sizing = prod_stack.view, prod_stack.program.sizing

    def verify(_: list[Any]) -> None:
        kafka = _cr(view, "Kafka")
        assert kafka.type == f"kubernetes:{versions.STRIMZI_API}:Kafka"
        config = kafka.inputs["spec"]["kafka"]["config"]
        assert config["default.replication.factor"] == 3.0
        assert config["min.insync.replicas"] == 2.0
        assert config["offsets.topic.replication.factor"] == 3.0
        assert config["transaction.state.log.min.isr"] == 2.0
        assert kafka.inputs["spec"]["kafka"]["rack"] == {
            "type": "topology-label",
            "topologyKey": "topology.kubernetes.io/zone",
        }
        assert "zookeeper" not in kafka.inputs["spec"]
        pools = {p.inputs["spec"]["roles"][0]: p for p in k8s_objects(view, "KafkaNodePool")}
        assert set(pools) == {"controller", "broker"}
        assert pools["controller"].inputs["spec"]["replicas"] == 3.0
        assert pools["broker"].inputs["spec"]["replicas"] == float(sizing.brokers)
        for pool in pools.values():
            (spread,) = pool.inputs["spec"]["template"]["pod"]["topologySpreadConstraints"]
            assert spread["topologyKey"] == "topology.kubernetes.io/zone"
            assert spread["whenUnsatisfiable"] == "DoNotSchedule"
            assert pool.inputs["metadata"]["labels"]["strimzi.io/cluster"] == names.KAFKA_CLUSTER
            assert pool.inputs["spec"]["storage"]["volumes"][0]["class"] == names.STORAGE_CLASS
        events = _cr(view, "KafkaTopic", names.EVENTS_TOPIC)
        assert events.inputs["spec"]["partitions"] == float(sizing.partitions)
        assert events.inputs["spec"]["replicas"] == 3.0
        assert events.inputs["metadata"]["labels"]["strimzi.io/cluster"] == names.KAFKA_CLUSTER
        counters = _cr(view, "KafkaTopic", names.COUNTERS_TOPIC)
        assert counters.inputs["spec"]["config"]["cleanup.policy"] == "compact"
        # a week for the ClickHouse loader to store a value before its tombstone wins
        assert counters.inputs["spec"]["config"]["min.compaction.lag.ms"] == 604_800_000.0

    return check(prod_stack.program.workloads.kafka.kafka.id).apply(verify)


@pulumi.runtime.test
def test_flink_ha_upgrade_mode_and_state_in_the_bucket(stack: Rendered) -> Any:
    view, cfg = stack.view, stack.program.config

    def verify(args: list[Any]) -> None:
        (archive_url,) = args
        flink = _cr(view, "FlinkDeployment")
        spec = flink.inputs["spec"]
        conf = spec["flinkConfiguration"]
        assert conf["high-availability.type"] == "kubernetes"
        for key in (
            "high-availability.storageDir",
            "state.checkpoints.dir",
            "state.savepoints.dir",
        ):
            assert conf[key].startswith(f"{archive_url}/flink/"), (key, conf[key], archive_url)
        assert spec["job"]["upgradeMode"] in {"last-state", "savepoint"}
        assert (
            spec["job"]["jarURI"]
            == f"local:///opt/flink/opt/flink-python-{versions.FLINK_VERSION}.jar"
        )
        assert spec["job"]["entryClass"] == "org.apache.flink.client.python.PythonDriver"
        assert spec["job"]["args"] == ["-pym", names.FLINK_JOB_MODULE]
        assert spec["image"] == f"ghcr.io/meterplane/flink-job:{cfg.release.version}"
        assert spec["serviceAccount"] == names.FLINK_SERVICE_ACCOUNT
        assert spec["job"]["parallelism"] == float(stack.program.sizing.partitions)
        if cfg.is_prod:
            assert spec["jobManager"]["replicas"] == 2.0

    return check(stack.program.foundation.target.archive_url).apply(verify)


@pulumi.runtime.test
def test_clickhouse_replicas_across_zones_and_keeper_of_three(stack: Rendered) -> Any:
    view, program = stack.view, stack.program

    def verify(_: list[Any]) -> None:
        keeper = _cr(view, "ClickHouseKeeperInstallation")
        (keeper_cluster,) = keeper.inputs["spec"]["configuration"]["clusters"]
        assert keeper_cluster["layout"]["replicasCount"] == 3.0
        chi = _cr(view, "ClickHouseInstallation")
        (cluster,) = chi.inputs["spec"]["configuration"]["clusters"]
        replicas = int(cluster["layout"]["replicasCount"])
        assert replicas >= 2
        assert cluster["layout"]["shardsCount"] == float(program.sizing.clickhouse_shards)
        templates = {t["name"]: t for t in chi.inputs["spec"]["templates"]["podTemplates"]}
        used = [r["templates"]["podTemplate"] for r in cluster["layout"]["replicas"]]
        assert len(used) == replicas
        zones = [templates[name]["zone"]["values"][0] for name in used]
        assert all(templates[name]["zone"]["key"] == "topology.kubernetes.io/zone" for name in used)
        assert set(zones) <= set(program.foundation.target.zones)
        if program.config.zones >= replicas:
            assert len(set(zones)) == replicas, zones  # every replica of a shard in its own zone
        (node,) = chi.inputs["spec"]["configuration"]["zookeeper"]["nodes"]
        assert node["host"].startswith(f"keeper-{keeper.inputs['metadata']['name']}.")

    return check(program.workloads.clickhouse.installation.id).apply(verify)


def _clickhouse_clients(view: RenderedStack) -> list[tuple[str, str, list[dict[str, Any]]]]:
    """(namespace, object name, env) of every container that is given a ClickHouse URL."""
    found = []
    pods = [
        (r, _containers(r)) for k in ("Deployment", "CronJob", "Job") for r in k8s_objects(view, k)
    ]
    flink = _cr(view, "FlinkDeployment")
    pods.append((flink, flink.inputs["spec"]["podTemplate"]["spec"]["containers"]))
    for resource, containers in pods:
        for c in containers:
            env = c.get("env", [])
            if any(e["name"] == "METERPLANE_CLICKHOUSE_URL" for e in env):
                meta = resource.inputs["metadata"]
                found.append((meta["namespace"], meta["name"], env))
    return found


@pulumi.runtime.test
def test_clickhouse_clients_have_their_own_users_and_secret_passwords(stack: Rendered) -> Any:
    view, program = stack.view, stack.program
    objects = program.workloads.clickhouse.secrets

    def verify(values: list[Any]) -> None:
        metas, datas = values[1 : 1 + len(objects)], values[1 + len(objects) :]
        users = _cr(view, "ClickHouseInstallation").inputs["spec"]["configuration"]["users"]
        assert not [k for k in users if k.startswith("default/")]  # the operator's, untouched
        for user in (names.CLICKHOUSE_WRITER, names.CLICKHOUSE_READER):
            ref = {"name": names.CLICKHOUSE_SECRET, "key": user}
            assert users[f"{user}/password"] == {"valueFrom": {"secretKeyRef": ref}}
        assert users["meterplane_sync/grants/query"] == ["GRANT SELECT ON meterplane.counters"]
        assert users["meterplane/grants/query"] == ["GRANT ALL ON meterplane.*"]
        profiles = _cr(view, "ClickHouseInstallation").inputs["spec"]["configuration"]["profiles"]
        assert profiles[f"{users['meterplane_sync/profile']}/readonly"] == "2"
        # The Secrets: both passwords in metering, only the reader's in shared; the plan
        # shows them masked, the program's values are the generated passwords.
        for r in k8s_objects(view, "Secret"):
            if r.inputs["metadata"]["name"] == names.CLICKHOUSE_SECRET:
                assert r.inputs["stringData"] == SECRET_PLACEHOLDER
        secrets = {meta["namespace"]: data for meta, data in zip(metas, datas, strict=True)}
        assert {ns: sorted(data) for ns, data in secrets.items()} == {
            "metering": ["meterplane", "meterplane_sync"],
            "shared": ["meterplane_sync"],
        }
        passwords = [v for data in secrets.values() for v in data.values()]
        assert all(len(p) == 32 and p.isalnum() for p in passwords)
        assert secrets["metering"]["meterplane_sync"] == secrets["shared"]["meterplane_sync"]
        assert secrets["metering"]["meterplane"] != secrets["metering"]["meterplane_sync"]
        # Every client: its user's password from its own namespace's Secret, defined before
        # the URL that expands it; the writer in metering, the reader (sync agent) in shared.
        clients = _clickhouse_clients(view)
        expected = {"migrate", "archive", "aggregate", "sync"}
        if program.config.features.entitlements:
            expected.add("entitlements")
        assert {name.split("-")[0] for _, name, _ in clients} == expected
        for namespace, name, env in clients:
            names_in_order = [e["name"] for e in env]
            url = env[names_in_order.index("METERPLANE_CLICKHOUSE_URL")]["value"]
            password = env[names_in_order.index("CLICKHOUSE_PASSWORD")]
            assert names_in_order.index("CLICKHOUSE_PASSWORD") < names_in_order.index(
                "METERPLANE_CLICKHOUSE_URL"
            ), name
            user = password["valueFrom"]["secretKeyRef"]["key"]
            assert user == ("meterplane_sync" if namespace == "shared" else "meterplane"), name
            assert password["valueFrom"]["secretKeyRef"]["name"] == names.CLICKHOUSE_SECRET
            assert user in secrets[namespace], (name, namespace)
            assert url == f"http://{user}:$(CLICKHOUSE_PASSWORD)@{names.CLICKHOUSE_HOST}", name

    return check(
        program.workloads.clickhouse.installation.id,
        *[s.metadata for s in objects],
        *[s.string_data for s in objects],
    ).apply(verify)


@pulumi.runtime.test
def test_sync_agent_network_policy_denies_ingress_and_limits_egress(stack: Rendered) -> Any:
    view, cfg = stack.view, stack.program.config

    def verify(_: list[Any]) -> None:
        (policy,) = [
            p
            for p in k8s_objects(view, "NetworkPolicy")
            if p.inputs["metadata"]["namespace"] == "shared"
        ]
        spec = policy.inputs["spec"]
        agent = _cr(view, "Deployment", "sync")
        assert (
            policy.inputs["metadata"]["namespace"]
            == agent.inputs["metadata"]["namespace"]
            == "shared"
        )
        assert (
            spec["podSelector"]["matchLabels"]
            == agent.inputs["spec"]["template"]["metadata"]["labels"]
        )
        assert sorted(spec["policyTypes"]) == ["Egress", "Ingress"]
        assert spec.get("ingress", []) == []
        dns, control_plane, clickhouse = spec["egress"]
        assert {p["port"] for p in dns["ports"]} == {53.0}
        assert dns["to"] == [
            {
                "namespaceSelector": {
                    "matchLabels": {"kubernetes.io/metadata.name": "kube-system"}
                },
                "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}},
            }
        ]
        assert [t["ipBlock"]["cidr"] for t in control_plane["to"]] == [
            str(c) for c in cfg.control_plane.egress_cidrs
        ]
        assert control_plane["ports"] == [{"protocol": "TCP", "port": 443.0}]
        # The only other peer is in-cluster: ClickHouse's pods in metering, HTTP port only.
        assert clickhouse["to"] == [
            {
                "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "metering"}},
                "podSelector": {"matchLabels": {"clickhouse.altinity.com/chi": "meterplane"}},
            }
        ]
        assert clickhouse["ports"] == [{"protocol": "TCP", "port": 8123.0}]
        env = {
            e["name"]: e for e in agent.inputs["spec"]["template"]["spec"]["containers"][0]["env"]
        }
        assert env["METERPLANE_CLICKHOUSE_URL"]["value"].startswith(
            "http://meterplane_sync:$(CLICKHOUSE_PASSWORD)@clickhouse-"
        )
        assert env["METERPLANE_CONTROL_PLANE_TOKEN"]["valueFrom"]["secretKeyRef"]["key"] == "token"

    return check(stack.program.workloads.sync_agent.network_policy.id).apply(verify)


@pulumi.runtime.test
def test_metering_egress_is_denied_by_default_and_never_open(stack: Rendered) -> Any:
    view, cfg = stack.view, stack.program.config
    target = stack.program.foundation.target

    def verify(_: list[Any]) -> None:
        policies = {
            p.inputs["metadata"]["name"]: p.inputs["spec"]
            for p in k8s_objects(view, "NetworkPolicy")
            if p.inputs["metadata"]["namespace"] == "metering"
        }
        deny = policies["default-deny-egress"]
        assert deny["podSelector"] == {}
        assert deny["policyTypes"] == ["Egress"]
        (dns,) = deny["egress"]
        assert {p["port"] for p in dns["ports"]} == {53.0}
        assert policies["allow-namespace"]["egress"] == [{"to": [{"podSelector": {}}]}]
        control_plane = [ip_network(str(c)) for c in cfg.control_plane.egress_cidrs]
        opened = [
            ip_network(peer["ipBlock"]["cidr"])
            for spec in policies.values()
            for rule in spec["egress"]
            for peer in rule.get("to", [])
            if "ipBlock" in peer
        ]
        assert opened
        for network in opened:
            assert network.prefixlen > 0, network  # never 0.0.0.0/0
            assert not any(network.overlaps(c) for c in control_plane), network
        assert all(rule.get("to") for spec in policies.values() for rule in spec["egress"])
        expected = {rule.cidr for rule in (*target.kube_api_egress, *target.object_store_egress)}
        assert {str(n) for n in opened} == expected
        # Who may use those exits: Flink and the archiver (bucket), Flink and Kafka (API).
        flink_labels = _cr(view, "FlinkDeployment").inputs["spec"]["podTemplate"]["metadata"][
            "labels"
        ]
        assert flink_labels[OBJECT_STORE_LABEL] == flink_labels[KUBE_API_LABEL] == "true"
        (job,) = k8s_objects(view, "CronJob")
        job_labels = job.inputs["spec"]["jobTemplate"]["spec"]["template"]["metadata"]["labels"]
        assert job_labels[OBJECT_STORE_LABEL] == "true"
        for name in ("ingest", "entitlements"):
            for deployment in (
                d for d in k8s_objects(view, "Deployment") if d.inputs["metadata"]["name"] == name
            ):
                pod_labels = deployment.inputs["spec"]["template"]["metadata"]["labels"]
                assert OBJECT_STORE_LABEL not in pod_labels
                assert KUBE_API_LABEL not in pod_labels

    return check(stack.program.workloads.egress.urn).apply(verify)


@pulumi.runtime.test
def test_every_object_carries_the_stack_labels(stack: Rendered) -> Any:
    view, cfg = stack.view, stack.program.config

    def verify(_: list[Any]) -> None:
        objects = [
            r for r in view.resources if r.type.startswith("kubernetes:") and "metadata" in r.inputs
        ]
        assert len(objects) > 20
        for resource in objects:
            labels = resource.inputs["metadata"].get("labels", {})
            assert labels.get("meterplane.io/customer") == cfg.customer, resource.name
            assert labels.get("meterplane.io/environment") == cfg.environment, resource.name
            assert labels.get("app.kubernetes.io/managed-by") == "pulumi", resource.name

    return check(stack.program.workloads.platform.storage_class.id).apply(verify)


def _containers(resource: RenderedResource) -> list[dict[str, Any]]:
    spec = resource.inputs["spec"]
    if resource.type.endswith(":CronJob"):
        spec = spec["jobTemplate"]["spec"]
    return list(spec["template"]["spec"]["containers"])


@pulumi.runtime.test
def test_every_app_image_carries_the_release_version(stack: Rendered) -> Any:
    view, release = stack.view, stack.program.config.release.version

    def verify(_: list[Any]) -> None:
        images = [
            c["image"]
            for kind in ("Deployment", "CronJob")
            for r in k8s_objects(view, kind)
            for c in _containers(r)
        ]
        images.append(_cr(view, "FlinkDeployment").inputs["spec"]["image"])
        assert len(images) >= 4
        for image in images:
            repository, tag = image.rsplit(":", 1)
            assert repository.startswith("ghcr.io/meterplane/"), image
            assert tag == release, image
        charts = {
            r.inputs["chart"]: r.inputs["version"]
            for r in view.resources
            if r.type == "kubernetes:helm.sh/v3:Release"
        }
        assert charts == {
            c.chart: c.version
            for c in (
                versions.CERT_MANAGER,
                versions.STRIMZI,
                versions.FLINK_OPERATOR,
                versions.CLICKHOUSE_OPERATOR,
            )
        }

    return check(stack.program.workloads.ingest.deployment.id).apply(verify)


@pulumi.runtime.test
def test_app_workloads_are_hardened_spread_and_budgeted(stack: Rendered) -> Any:
    view, prod = stack.view, stack.program.config.is_prod

    def verify(_: list[Any]) -> None:
        deployments = {r.inputs["metadata"]["name"]: r for r in k8s_objects(view, "Deployment")}
        budgets = {r.inputs["metadata"]["name"] for r in k8s_objects(view, "PodDisruptionBudget")}
        scalers = {
            r.inputs["metadata"]["name"]: r for r in k8s_objects(view, "HorizontalPodAutoscaler")
        }
        for name, deployment in deployments.items():
            pod = deployment.inputs["spec"]["template"]["spec"]
            assert pod["securityContext"]["runAsNonRoot"] is True
            for container in pod["containers"]:
                security = container["securityContext"]
                assert security["readOnlyRootFilesystem"] is True
                assert security["allowPrivilegeEscalation"] is False
                assert security["capabilities"] == {"drop": ["ALL"]}
                assert {"cpu", "memory"} <= set(container["resources"]["limits"])
                assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
            if name == "sync":
                continue  # single writer of the outbox: no HPA, no spread
            assert name in budgets
            assert scalers[name].inputs["spec"]["scaleTargetRef"]["name"] == name
            spread = pod["topologySpreadConstraints"][0]
            assert spread["topologyKey"] == "topology.kubernetes.io/zone"
            assert spread["whenUnsatisfiable"] == ("DoNotSchedule" if prod else "ScheduleAnyway")
        ingest = deployments["ingest"]
        assert ingest.inputs["spec"]["replicas"] == float(stack.program.sizing.ingest_replicas)
        env = {
            e["name"]: e for e in ingest.inputs["spec"]["template"]["spec"]["containers"][0]["env"]
        }
        assert env["METERPLANE_KAFKA_BOOTSTRAP"]["value"] == names.KAFKA_BOOTSTRAP
        assert (
            env["METERPLANE_API_KEYS"]["valueFrom"]["secretKeyRef"]["name"] == names.API_KEYS_SECRET
        )

    return check(stack.program.workloads.ingest.deployment.id).apply(verify)


@pulumi.runtime.test
def test_archiver_exports_to_the_bucket_under_the_key(stack: Rendered) -> Any:
    view, cfg = stack.view, stack.program.config
    target = stack.program.foundation.target

    def verify(args: list[Any]) -> None:
        archive_url, kms_key = args
        (job,) = k8s_objects(view, "CronJob")
        pod = job.inputs["spec"]["jobTemplate"]["spec"]["template"]["spec"]
        assert pod["serviceAccountName"] == names.ARCHIVER_SERVICE_ACCOUNT
        (container,) = pod["containers"]
        assert container["args"] == ["archive"]
        env = {e["name"]: e.get("value") for e in container["env"]}
        assert env["METERPLANE_ARCHIVE_URL"] == f"{archive_url}/events"
        assert env["METERPLANE_ARCHIVE_KMS_KEY"] == kms_key
        assert env["METERPLANE_HOT_RETENTION_DAYS"] == str(cfg.archive.hot_retention_days)
        assert job.inputs["spec"]["concurrencyPolicy"] == "Forbid"

    return check(target.archive_url, target.archive_kms_key).apply(verify)


@pulumi.runtime.test
def test_optional_features_declare_nothing_when_off(stack: Rendered) -> Any:
    view, features = stack.view, stack.program.config.features

    def verify(_: list[Any]) -> None:
        entitlements = [
            r
            for r in view.resources
            if r.type.startswith("kubernetes:")
            and r.inputs.get("metadata", {}).get("name") == "entitlements"
        ]
        components = [r for r in view.resources if r.name.endswith("-entitlements")]
        if features.entitlements:
            kinds = {r.type.rsplit(":", 1)[1] for r in entitlements}
            assert kinds == {
                "ServiceAccount",
                "Deployment",
                "Service",
                "PodDisruptionBudget",
                "HorizontalPodAutoscaler",
            }
        else:
            assert entitlements == []
            assert components == []
        claims = {r.inputs["metadata"]["name"] for r in k8s_objects(view, "PersistentVolumeClaim")}
        agent = _cr(view, "Deployment", "sync")
        env = {e["name"] for e in agent.inputs["spec"]["template"]["spec"]["containers"][0]["env"]}
        assert ("sync-customer-data" in claims) is features.local_customer_data
        assert ("METERPLANE_CATALOG" in env) is features.local_customer_data

    return check(stack.program.workloads.sync_agent.network_policy.id).apply(verify)


@pulumi.runtime.test
def test_storage_class_allows_expansion(stack: Rendered) -> Any:
    view = stack.view

    def verify(_: list[Any]) -> None:
        (storage_class,) = k8s_objects(view, "StorageClass")
        assert storage_class.inputs["allowVolumeExpansion"] is True
        assert storage_class.inputs["volumeBindingMode"] == "WaitForFirstConsumer"
        assert storage_class.inputs["metadata"]["name"] == names.STORAGE_CLASS

    return check(stack.program.workloads.platform.storage_class.id).apply(verify)


@pulumi.runtime.test
def test_core_objects_validate_against_the_kubernetes_schema(stack: Rendered) -> Any:
    view = stack.view

    def verify(_: list[Any]) -> None:
        validated = 0
        for kind in CORE_KINDS:
            for resource in k8s_objects(view, kind):
                manifest = _ints(resource.inputs)
                kubernetes_validate.validate(manifest, "1.33.0", strict=True)
                validated += 1
        kinds = {
            r.type.rsplit(":", 1)[1] for r in view.resources if r.type.startswith("kubernetes:")
        }
        assert {
            "Deployment",
            "Service",
            "NetworkPolicy",
            "PodDisruptionBudget",
            "HorizontalPodAutoscaler",
        } <= kinds
        assert {"CronJob", "StorageClass", "Namespace", "ServiceAccount"} <= kinds
        assert validated >= 15

    return check(stack.program.workloads.platform.storage_class.id).apply(verify)


def test_validation_catches_a_misspelled_field() -> None:
    # The schema check is strict: a camelCase slip in a manifest is an error, not ignored.
    manifest = {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": {"name": "x", "namespace": "metering"},
        "automountServiceAccountTokens": False,
    }
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(manifest, "1.33.0", strict=True)


def test_one_helper_rejects_ambiguity() -> None:
    with pytest.raises(AssertionError):
        one(rendered(DEV_STACK).view, "aws:ec2/subnet:Subnet")  # two subnets: private + public
