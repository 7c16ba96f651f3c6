"""Production engines around Kafka: the producer-backed durable buffer, the record format
shared with the Flink job, and the consumers of the counters and events topics.

``meterplane.kafka.records`` imports only stdlib and msgspec, so the Flink job's separate
environment can import it; everything that needs confluent-kafka lives in other modules.
"""
