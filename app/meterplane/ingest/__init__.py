"""Ingestion: validate batches and make them durable before acking."""
