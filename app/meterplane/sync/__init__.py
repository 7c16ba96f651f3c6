"""The sync agent: the data plane's only bridge to the vendor's control plane.

Every connection is opened by the agent (outbound HTTPS). Inbound it applies ordered change
records (catalog, subscriptions, credit grants, governance) from a persisted cursor;
outbound it publishes usage rollups and lifecycle events from a durable outbox. Only
aggregates leave: ``protocol.check_aggregates_only`` refuses any payload that carries a
field of an individual event. The protocol is ``docs/control-plane-openapi.yaml``.
"""
