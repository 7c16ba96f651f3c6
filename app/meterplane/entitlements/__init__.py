"""Entitlement decisions, answered from memory."""
