"""Aggregation: dedupe and count what the buffer holds."""
