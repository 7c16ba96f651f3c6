"""Shared core: wire models, catalog, semantics (periods, meters, counters), settings, storage."""
