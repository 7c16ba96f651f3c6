"""Names shared by the components and the services: one place, so they never drift."""

from __future__ import annotations

METERING_NAMESPACE = "metering"
SHARED_NAMESPACE = "shared"
OPERATORS_NAMESPACE = "meterplane-system"

# Kafka (Strimzi): cluster name, topics, and the in-cluster bootstrap address.
KAFKA_CLUSTER = "meterplane"
EVENTS_TOPIC = "events"  # raw event batches from ingest
COUNTERS_TOPIC = "counters"  # compacted; key = customer/feature/period
KAFKA_BOOTSTRAP = f"{KAFKA_CLUSTER}-kafka-bootstrap.{METERING_NAMESPACE}.svc:9093"

# Flink: the PyFlink aggregation job inside the flink-job image.
FLINK_DEPLOYMENT = "aggregate"
FLINK_JOB_MODULE = "meterplane_flink.job"
FLINK_PYTHON_DRIVER = "org.apache.flink.client.python.PythonDriver"

# ClickHouse (Altinity): installation, cluster and Keeper names.
CLICKHOUSE_INSTALLATION = "meterplane"
CLICKHOUSE_CLUSTER = "events"
CLICKHOUSE_KEEPER = "keeper"
CLICKHOUSE_KEEPER_HOST = f"keeper-{CLICKHOUSE_KEEPER}.{METERING_NAMESPACE}.svc"
CLICKHOUSE_HOST = f"clickhouse-{CLICKHOUSE_INSTALLATION}.{METERING_NAMESPACE}.svc:8123"
CLICKHOUSE_URL = f"http://{CLICKHOUSE_HOST}"  # no credentials: see pods.clickhouse_env
# ClickHouse users, each with a generated password in the ``clickhouse-credentials`` Secret
# under the user's name: the writer (migrations, Flink, the archiver, entitlements) and a
# read-only reader for the sync agent, the one workload that talks to the outside.
CLICKHOUSE_WRITER = "meterplane"
CLICKHOUSE_READER = "meterplane_sync"
CLICKHOUSE_SECRET = "clickhouse-credentials"  # noqa: S105 a Secret's name, not a password

# Service accounts that hold a cloud identity scoped to the archive bucket.
ARCHIVER_SERVICE_ACCOUNT = "archiver"
FLINK_SERVICE_ACCOUNT = "flink"
BUCKET_WORKLOADS = (ARCHIVER_SERVICE_ACCOUNT, FLINK_SERVICE_ACCOUNT)

# The app containers (DESIGN.md 3.1/3.2).
HTTP_PORT = 8080
READINESS_PATH = "/readyz"
LIVENESS_PATH = "/livez"
METRICS_PATH = "/metrics"
API_KEYS_SECRET = "meterplane-api-keys"  # noqa: S105 a Secret name; made by the platform team
API_KEYS_SECRET_KEY = "keys"  # noqa: S105 the key inside that Secret

STORAGE_CLASS = "meterplane-ssd"
ZONE_LABEL = "topology.kubernetes.io/zone"
