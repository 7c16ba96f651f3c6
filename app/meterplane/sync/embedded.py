"""The agent inside ``meterplane serve`` (when ``METERPLANE_CONTROL_PLANE_URL`` is set).

Counters come from the plane's in-memory book; the synced catalog is put in force in the
plane's ``CatalogHolder`` (decisions and counting switch together) and the synced ingest
keys in the HTTP API. The agent's state lives in ``<data dir>/sync/agent.sqlite``.
"""

from __future__ import annotations

from meterplane.core.catalog import Catalog
from meterplane.core.settings import Settings
from meterplane.plane import EmbeddedPlane
from meterplane.sync.adapters import BookSource, EmbeddedTarget, KeySink, Total
from meterplane.sync.agent import AgentConfig, SyncAgent, load_synced_catalog


class _CaughtUpBookSource(BookSource):
    """Reads nothing until the aggregator has replayed the log present at start: right
    after a restart the book is still catching up, and a rollup taken then would publish
    a value lower than one already sent."""

    def __init__(self, plane: EmbeddedPlane) -> None:
        super().__init__(plane.aggregator.book)
        self._plane = plane
        self._replay_end = plane.log.durable_end
        self._caught_up = False

    def totals(self, force: bool = False) -> list[Total] | None:
        if not self._caught_up:
            if self._plane.aggregator.pos < self._replay_end:
                return None
            self._caught_up = True
            force = True
        return super().totals(force)


class EmbeddedSync:
    """The agent of an embedded plane."""

    def __init__(self, agent: SyncAgent, target: EmbeddedTarget) -> None:
        self.agent = agent
        self._target = target

    def bind_auth(self, auth: KeySink) -> None:
        """Let synced ingest keys replace the HTTP API's keys."""
        self._target.bind_auth(auth)

    def stop(self) -> None:
        """Stop the agent (its outbox and cursor are durable)."""
        self.agent.stop()


def initial_catalog(settings: Settings) -> Catalog | None:
    """The previously synced catalog when syncing is on: it replaces the catalog file from
    the first counted event on, restarts included."""
    if not settings.control_plane_url:
        return None
    return load_synced_catalog(settings.data_dir)


def start_embedded_sync(settings: Settings, plane: EmbeddedPlane) -> EmbeddedSync | None:
    """Start the agent if a control plane is configured (call after ``plane.start()``)."""
    if not settings.control_plane_url:
        return None
    config = AgentConfig.from_settings(settings)
    source = _CaughtUpBookSource(plane)
    plane.aggregator.on_change(source.mark_changed)
    target = EmbeddedTarget(plane.catalog)
    agent = SyncAgent(
        config,
        settings.data_dir / "sync" / "agent.sqlite",
        source,
        target,
        plane.catalog.get(),
    )
    agent.start()
    return EmbeddedSync(agent, target)
