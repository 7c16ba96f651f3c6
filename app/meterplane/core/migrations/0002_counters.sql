-- Counter values per customer, feature, period and resource ('' = customer-wide), written
-- by the aggregator at each checkpoint; the row with the highest version is current.
CREATE TABLE IF NOT EXISTS counters (
    customer_id String,
    feature_id String,
    period_start DateTime64(6, 'UTC'),
    resource_id String,
    period_end Nullable(DateTime64(6, 'UTC')),
    value Nullable(Float64),
    updated_at DateTime64(6, 'UTC'),
    version UInt64
)
ENGINE = ReplacingMergeTree(version)
ORDER BY (customer_id, feature_id, period_start, resource_id)
