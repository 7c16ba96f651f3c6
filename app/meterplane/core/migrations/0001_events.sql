-- Raw events and usage reports in their original form, one row per identity
-- (customer_id, idempotency_key). The version keeps the FIRST copy: a duplicate that
-- arrives after the streaming dedup window has a larger log position, hence a smaller
-- version, and loses the merge. Read with FINAL.
CREATE TABLE IF NOT EXISTS events (
    customer_id String,
    idempotency_key String,
    kind LowCardinality(String),
    name String,
    timestamp DateTime64(6, 'UTC'),
    ingested_at DateTime64(6, 'UTC'),
    resource_id String,
    payload String,
    log_pos UInt64,
    version UInt64 MATERIALIZED 18446744073709551615 - log_pos
)
ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(timestamp)
ORDER BY (customer_id, idempotency_key)
