"""The sync agent: two threads over one durable store.

Inbound (thread ``sync-changes``): long-poll the change feed from the persisted cursor.
For each page, in this order (the order of durable effects matters):
1. apply the records to a copy of the synced state (idempotent "set" semantics; records at
   or below the state's seq are skipped);
2. put the result in force (catalog for decisions and counting, ingest keys, interval);
3. persist cursor + state + journal in one SQLite transaction.
A crash between 2 and 3 replays the page on restart, which changes nothing.

Outbound (thread ``sync-publish``): every tick, read the customer-wide counter totals;
on each rollup interval enqueue a new revision of every total that changed, and at every
period close enqueue the period's closing value at once; detect limit crossings; then
drain the outbox (rollups, lifecycle events) in batches, deleting only what the control
plane acknowledged. Failures back off exponentially with jitter and log one line each.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
import msgspec

from meterplane.core.catalog import Catalog, FeatureType, SubscriptionStatus
from meterplane.core.errors import ConfigError
from meterplane.core.periods import period_bounds
from meterplane.core.settings import Settings
from meterplane.core.threads import NamedThread
from meterplane.core.timeutil import US_PER_S, iso, now_us, to_us
from meterplane.sync import metrics
from meterplane.sync.adapters import CounterSource, Target, Total
from meterplane.sync.client import Backoff, ControlPlaneClient, ControlPlaneError, check_url
from meterplane.sync.protocol import (
    MAX_BATCH,
    ChangePage,
    LifecycleBatch,
    LifecycleEvent,
    LifecycleType,
    RawFieldLeak,
    Rollup,
    RollupBatch,
    lifecycle_id,
    rollup_id,
)
from meterplane.sync.state import ChangeRejected, SyncedState, apply_change, materialize, to_catalog
from meterplane.sync.store import AgentStore, Mark, NewCrossing, NewRollup, PeriodKey

log = logging.getLogger(__name__)
_GRANTING = (SubscriptionStatus.ACTIVE, SubscriptionStatus.TRIALING)
LIMIT_CROSSED: LifecycleType = "usage.limit_crossed"


@dataclass(frozen=True)
class AgentConfig:
    """How the agent reaches the control plane and how often it works."""

    url: str
    environment: str
    token: str
    poll_wait_s: float = 25.0
    rollup_interval_s: float = 60.0
    backoff_base_s: float = 0.5
    backoff_max_s: float = 60.0
    tick_s: float = 0.25
    read_every_s: float = 0.25

    @staticmethod
    def from_settings(settings: Settings, read_every_s: float = 1.0) -> AgentConfig:
        """From ``METERPLANE_CONTROL_PLANE_*`` and ``METERPLANE_SYNC_*`` settings.

        ``read_every_s`` bounds how often counters are read (a full pass over them): limit
        crossings are noticed within it; interval rollups and period closes read at once.
        """
        if not settings.control_plane_url:
            raise ConfigError("METERPLANE_CONTROL_PLANE_URL: required to sync")
        url = check_url(settings.control_plane_url)
        if not settings.control_plane_token:
            raise ConfigError(
                "METERPLANE_CONTROL_PLANE_TOKEN: required with METERPLANE_CONTROL_PLANE_URL"
                " (the environment's bearer credential)"
            )
        if not settings.control_plane_environment:
            raise ConfigError(
                "METERPLANE_CONTROL_PLANE_ENVIRONMENT: required with METERPLANE_CONTROL_PLANE_URL"
            )
        return AgentConfig(
            url=url,
            environment=settings.control_plane_environment,
            token=settings.control_plane_token,
            poll_wait_s=settings.sync_poll_interval_s,
            rollup_interval_s=settings.sync_rollup_interval_s,
            backoff_base_s=settings.sync_backoff_base_s,
            backoff_max_s=settings.sync_backoff_max_s,
            tick_s=min(0.25, settings.sync_poll_interval_s),
            read_every_s=min(read_every_s, settings.sync_rollup_interval_s),
        )


def _value_text(v: float) -> str:
    return msgspec.json.encode(v).decode()


def _load_state(path: Path) -> SyncedState:
    store = AgentStore(path)
    try:
        return store.load()[1]
    finally:
        store.close()


def load_synced_catalog(data_dir: Path) -> Catalog | None:
    """The catalog synced before a restart, if any (so counting resumes with it)."""
    path = data_dir / "sync" / "agent.sqlite"
    if not path.exists():
        return None
    state = _load_state(path)
    return None if state.catalog is None else to_catalog(state)


class SyncAgent:
    """Applies change records and publishes aggregates; see the module docstring."""

    def __init__(
        self,
        config: AgentConfig,
        store_path: Path,
        source: CounterSource,
        target: Target,
        catalog: Catalog | None = None,
        *,
        clock: Callable[[], int] = now_us,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.config = config
        self.store = AgentStore(store_path)
        self.source = source
        self.target = target
        self.client = ControlPlaneClient(
            config.url, config.environment, config.token, transport=transport
        )
        self._clock = clock
        self.catalog = catalog
        self.cursor, self.state = self.store.load()
        self.rollup_interval_s = config.rollup_interval_s
        self._marks: dict[PeriodKey, Mark] = self.store.marks()
        self._crossings = self.store.crossings()
        self._latest: dict[PeriodKey, Total] = {}
        self._next_close: int | None = None
        self._last_rollup_us = clock()
        self._last_read = 0.0
        self._recheck = True
        self._caught_up_us: int | None = None
        self._poll_ok = False
        self._started_us = clock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._send_at = 0.0
        self._send_backoff = Backoff(config.backoff_base_s, config.backoff_max_s)
        self._sending = "rollup"
        # httpx logs every request at INFO: one line per long-poll would bury the one line
        # per failure that operators need.
        logging.getLogger("httpx").setLevel(logging.WARNING)
        metrics.CURSOR.set(self.state.seq)

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Put the persisted state in force, then start polling and publishing."""
        self._put_in_force(self.state, None)
        for name, fn in (("sync-changes", self._poll_loop), ("sync-publish", self._publish_loop)):
            t = NamedThread(target=fn, name=name, daemon=True)
            t.start()
            self._threads.append(t)
        log.info(
            "sync agent started: environment %s, control plane %s, cursor %s",
            self.config.environment,
            self.config.url,
            self.cursor,
        )

    def stop(self) -> None:
        """Stop both threads; what was not sent stays in the outbox for the next start."""
        self._stop.set()
        publisher = self._threads[1] if len(self._threads) > 1 else None
        if publisher is not None:
            publisher.join(timeout=10)
        # The poller may sit in a long-poll for up to its wait. It is not waited for: its
        # page is either committed or replayed on the next start, which changes nothing.
        self.client.close()
        if self._threads:
            self._threads[0].join(timeout=0.5)
        if not any(t.is_alive() for t in self._threads):
            self.store.close()

    def ready(self) -> bool:
        """Whether the change feed was read up to date at least once since start."""
        return self._caught_up_us is not None

    # ------------------------------------------------------------------ inbound

    def _poll_loop(self) -> None:
        backoff = Backoff(self.config.backoff_base_s, self.config.backoff_max_s)
        while not self._stop.is_set():
            try:
                page = self.client.changes(self.cursor, self.config.poll_wait_s)
                self.apply_page(page)
            except ControlPlaneError as err:
                if self._stop.is_set():
                    return
                self._poll_ok = False
                self._failed("changes", err, backoff, err.retry_after_s)
                continue
            except Exception:  # a bug must not silently stop syncing: log, back off, go on
                if self._stop.is_set():
                    return
                self._poll_ok = False
                log.exception("sync changes: unexpected error")
                metrics.FAILURES.labels("changes").inc()
                self._stop.wait(backoff.next_delay())
                continue
            backoff.reset()
            self._caught_up_us = self._clock()
            self._poll_ok = True
            metrics.LAST_SUCCESS.labels("changes").set(time.time())

    def apply_page(self, page: ChangePage) -> int:
        """Apply one page of change records; returns how many were new."""
        old = self.state
        state = old
        journal: list[tuple[int, str, str, str, int]] = []
        for rec in page.changes:
            if rec.seq <= state.seq:
                continue  # already applied before a restart: a no-op by construction
            try:
                state = apply_change(state, rec)
                outcome = "applied"
            except ChangeRejected as err:
                log.error("sync change seq %d rejected, previous state kept: %s", rec.seq, err)
                state = msgspec.structs.replace(state, seq=rec.seq)
                outcome = "rejected"
            metrics.CHANGES.labels(outcome).inc()
            journal.append((rec.seq, rec.id, rec.type, outcome, self._clock()))
        if not journal:
            return 0
        self._put_in_force(state, old)
        self.store.commit_changes(page.cursor, state, journal)
        self.state, self.cursor = state, page.cursor
        metrics.CURSOR.set(state.seq)
        return len(journal)

    def _put_in_force(self, new: SyncedState, old: SyncedState | None) -> None:
        if new.catalog is not None and (
            old is None or old.catalog != new.catalog or old.customers != new.customers
        ):
            catalog = to_catalog(new)
            self.target.put_catalog(catalog, materialize(new))
            self.catalog = catalog
            self._recheck = True
        if new.apiKeys is not None and (old is None or old.apiKeys != new.apiKeys):
            self.target.put_api_keys(tuple(new.apiKeys))
        self.rollup_interval_s = new.rollupIntervalSeconds or self.config.rollup_interval_s

    # ------------------------------------------------------------------ outbound

    def _publish_loop(self) -> None:
        read_backoff = Backoff(self.config.backoff_base_s, self.config.backoff_max_s)
        read_at = 0.0
        while not self._stop.is_set():
            if time.monotonic() >= read_at:
                try:
                    self.collect()
                    read_backoff.reset()
                except Exception as err:  # e.g. ClickHouse unreachable: back off, go on
                    delay = read_backoff.next_delay()
                    read_at = time.monotonic() + delay
                    metrics.FAILURES.labels("counters").inc()
                    log.warning(
                        "sync counters read failed (attempt %d, next try in %.1fs): %s: %s",
                        read_backoff.failures,
                        delay,
                        type(err).__name__,
                        err,
                    )
            if time.monotonic() >= self._send_at:
                try:
                    self._send()
                except Exception:  # a bug or a full disk must not silently stop publishing
                    log.exception("sync publish: unexpected error")
                    metrics.FAILURES.labels("publish").inc()
                    self._send_at = time.monotonic() + self._send_backoff.next_delay()
            try:
                self._update_gauges()
            except Exception:
                log.exception("sync metrics: unexpected error")
            self._stop.wait(self.config.tick_s)

    def _send(self) -> None:
        try:
            self.drain()
        except ControlPlaneError as err:
            self._send_at = time.monotonic() + self._failed_delay(
                self._sending, err, self._send_backoff, err.retry_after_s
            )
            return
        except RawFieldLeak as err:
            # Never reached by the typed payloads; if it ever is, nothing leaves and the
            # item stays queued so no aggregate is lost while the bug is fixed.
            metrics.REFUSED.inc()
            log.error("sync publish refused by the aggregates-only guard: %s", err)
            self._send_at = time.monotonic() + self._send_backoff.next_delay()
            return
        self._send_backoff.reset()

    def collect(self) -> None:
        """Read totals if due; enqueue rollups (interval, period close) and crossings."""
        now = self._clock()
        interval_due = now - self._last_rollup_us >= self.rollup_interval_s * US_PER_S
        close_due = self._next_close is not None and self._next_close <= now
        fresh = False
        if (
            interval_due
            or close_due
            or time.monotonic() - self._last_read >= (self.config.read_every_s)
        ):
            # The first read after start is a full one: the source may have consumed its
            # "changed" flag for a previous agent in the same process.
            totals = self.source.totals(force=close_due or self._last_read == 0.0)
            self._last_read = time.monotonic()
            if totals is not None:
                self._latest = {(t.customer, t.feature, t.start): t for t in totals}
                metrics.COUNTERS.set(len(self._latest))
                fresh = True
        if fresh or interval_due or close_due:
            self._enqueue_rollups(now, interval_due)
        if fresh or self._recheck:
            self._recheck = False
            self._detect_crossings(now)
        if interval_due:
            self._last_rollup_us = now

    def _enqueue_rollups(self, now: int, interval_due: bool) -> None:
        items: list[NewRollup] = []
        next_close: int | None = None
        env = self.config.environment
        for key, t in self._latest.items():
            closed = t.end is not None and t.end <= now
            mark = self._marks.get(key)
            text = _value_text(t.value)
            if mark is not None and mark.value == text and (mark.closed or not closed):
                if not closed and t.end is not None:
                    next_close = t.end if next_close is None else min(next_close, t.end)
                continue
            closing = closed and (mark is None or not mark.closed)
            if not (interval_due or closing):
                if t.end is not None and not closed:
                    next_close = t.end if next_close is None else min(next_close, t.end)
                continue
            rev = (mark.revision if mark else 0) + 1
            rid = rollup_id(env, t.customer, t.feature, t.start, rev)
            body = msgspec.json.encode(
                Rollup(
                    rollupId=rid,
                    customerId=t.customer,
                    featureId=t.feature,
                    periodStart=iso(t.start) or "",
                    periodEnd=iso(t.end),
                    value=t.value,
                    asOf=iso(now) or "",
                    revision=rev,
                    closed=closed,
                )
            )
            items.append(NewRollup(key, rid, body, Mark(rev, text, closed)))
            if not closed and t.end is not None:
                next_close = t.end if next_close is None else min(next_close, t.end)
        self._next_close = next_close
        if items:
            self.store.enqueue_rollups(items, now)
            for it in items:
                self._marks[it.key] = it.mark

    def _limit(self, t: Total, now: int) -> float | None:
        """The effective limit of the period's customer-wide usage, if it is the current
        period of an active subscription's limited METERED entitlement. Same rules as
        ``Decider.check``: plan + add-ons, plus credit grants valid now."""
        catalog = self.catalog
        if catalog is None:
            return None
        customer = catalog.customers.get(t.customer)
        if customer is None or customer.subscription is None:
            return None
        sub = customer.subscription
        if (
            sub.status not in _GRANTING
            or to_us(sub.startDate) > now
            or (sub.endDate is not None and to_us(sub.endDate) <= now)
        ):
            return None
        ent = catalog.resolved(t.customer, t.feature)
        if ent is None or ent.feature_type is not FeatureType.METERED or ent.usage_limit is None:
            return None
        if period_bounds(ent.reset_period, ent.anchor_us, now)[0] != t.start:
            return None
        limit = ent.usage_limit
        for g in customer.credits:
            if (
                g.featureId == t.feature
                and to_us(g.validFrom) <= now
                and (g.validUntil is None or now < to_us(g.validUntil))
            ):
                limit += g.amount
        return limit

    def _detect_crossings(self, now: int) -> None:
        """A crossing is usage reaching a limit it was below of. Raising the limit (a credit
        grant) re-arms it: usage that reaches the higher limit crosses again, even if no
        sample saw it below in between."""
        items: list[NewCrossing] = []
        env = self.config.environment
        for key, t in self._latest.items():
            limit = self._limit(t, now)
            count, crossed = self._crossings.get(key, (0, None))
            over = limit is not None and t.value > 0 and t.value >= limit
            if not over:
                if crossed is not None:
                    items.append(NewCrossing(key, count, None, None, None))
                continue
            assert limit is not None  # over implies a limit
            if crossed is not None and limit <= crossed:
                continue  # still over the limit already reported
            count += 1
            eid = lifecycle_id(env, LIMIT_CROSSED, t.customer, t.feature, t.start, count)
            body = msgspec.json.encode(
                LifecycleEvent(
                    eventId=eid,
                    type=LIMIT_CROSSED,
                    customerId=t.customer,
                    featureId=t.feature,
                    periodStart=iso(t.start) or "",
                    periodEnd=iso(t.end),
                    usage=t.value,
                    limit=int(limit) if float(limit).is_integer() else limit,
                    crossing=count,
                    detectedAt=iso(now) or "",
                )
            )
            items.append(NewCrossing(key, count, limit, eid, body))
        if items:
            self.store.record_crossings(items, now)
            for it in items:
                self._crossings[it.key] = (it.count, it.crossed_limit)

    def drain(self) -> int:
        """Send everything in the outbox, oldest first; returns how many were acknowledged."""
        sent = 0
        for kind in ("rollup", "lifecycle"):
            self._sending = kind
            while not self._stop.is_set():
                items = self.store.pending(kind, MAX_BATCH)
                if not items:
                    break
                if kind == "rollup":
                    self.client.post_rollups(
                        RollupBatch([msgspec.json.decode(i.body, type=Rollup) for i in items])
                    )
                else:
                    self.client.post_lifecycle(
                        LifecycleBatch(
                            [msgspec.json.decode(i.body, type=LifecycleEvent) for i in items]
                        )
                    )
                self.store.delete([i.seq for i in items])
                metrics.SENT.labels(kind).inc(len(items))
                metrics.LAST_SUCCESS.labels(kind).set(time.time())
                sent += len(items)
        return sent

    # ------------------------------------------------------------------ reporting

    def _failed_delay(
        self, op: str, err: ControlPlaneError, backoff: Backoff, retry_after: float | None
    ) -> float:
        delay = backoff.next_delay()
        if retry_after is not None:
            delay = max(delay, min(retry_after, self.config.backoff_max_s))
        metrics.FAILURES.labels(op).inc()
        log.warning(
            "sync %s failed (attempt %d, next try in %.1fs): %s", op, backoff.failures, delay, err
        )
        return delay

    def _failed(
        self, op: str, err: ControlPlaneError, backoff: Backoff, retry_after: float | None
    ) -> None:
        self._stop.wait(self._failed_delay(op, err, backoff, retry_after))

    def _update_gauges(self) -> None:
        now = self._clock()
        pending, oldest = self.store.outbox_stats()
        metrics.OUTBOX.set(pending)
        metrics.LAG.labels("outbound").set(0 if oldest is None else (now - oldest) / US_PER_S)
        # While long-polls succeed the agent is current (a change arrives with the answer);
        # otherwise the lag is the time since the feed was last read successfully.
        since = self._caught_up_us if self._caught_up_us is not None else self._started_us
        lag = 0 if self._poll_ok else max(0, now - since) / US_PER_S
        metrics.LAG.labels("inbound").set(lag)
