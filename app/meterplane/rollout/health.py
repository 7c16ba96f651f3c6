"""The health gate a rollout waits on between stacks and waves.

A :class:`HealthProbe` takes one :class:`HealthSample` of a stack's data plane: is ingest
ready, how many items it has acked, how many batches it refused (by HTTP status) and how
far the aggregation is behind. The gate compares samples over a soak period:

- **readiness** — ``/readyz`` answers 200 ``{"status": "UP"}``;
- **error rate** — server-side refusals (5xx: buffer full or unavailable) among what ingest
  answered *since the stack was applied*, from ``meterplane_batches_rejected_total`` and
  ``meterplane_items_accepted_total``. Counters are cumulative, so the gate uses deltas
  from a baseline (and restarts with the pod when a counter goes backwards);
- **consumer lag** — ``meterplane_buffer_backlog_bytes`` (embedded buffer) or the Kafka
  consumer group's lag (production), below a threshold.

Not ready and lagging are waited out until the timeout (pods are rolling, the new Flink job
is catching up); an error rate over the threshold fails at once — that is the signal the
rollout exists to catch, and every further minute on a bad release drops customer traffic.

Probes: :class:`HttpHealthProbe` scrapes the ingest service over HTTP;
:class:`KafkaConsumerLag` adds production lag; :class:`ScriptedProbe` is the in-memory
test double (and what ``--dry-run`` would never need: a dry run does not gate).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import httpx
from prometheus_client.parser import text_string_to_metric_families

from meterplane.rollout.errors import RolloutError

ACCEPTED_METRIC = "meterplane_items_accepted_total"
REJECTED_METRIC = "meterplane_batches_rejected_total"
BACKLOG_METRIC = "meterplane_buffer_backlog_bytes"


class ProbeError(Exception):
    """A sample could not be taken (endpoint unreachable, metrics missing or malformed)."""


@dataclass(frozen=True)
class HealthSample:
    """One observation of a stack's data plane.

    ``lag`` is in ``lag_unit`` (bytes for the embedded buffer, records for Kafka); ``None``
    when the probe has no lag source, which the gate reports as a failed check — a gate
    that cannot see lag does not pass a release blind.
    """

    ready: bool
    ready_detail: str
    accepted: float
    rejected: Mapping[int, float]
    lag: float | None
    lag_unit: str = "bytes"


@dataclass(frozen=True)
class Thresholds:
    """Limits a healthy stack stays within."""

    max_error_rate: float = 0.01
    max_lag: float = 64 * 1024 * 1024
    # Statuses that are the plane's fault; 4xx are the caller's (bad key, bad batch).
    error_statuses: frozenset[int] = frozenset(range(500, 600))


@dataclass(frozen=True)
class Check:
    """One criterion of the gate; ``fatal`` failures stop the wait at once."""

    name: str
    ok: bool
    detail: str
    fatal: bool = False


def _restarted(baseline: HealthSample, current: HealthSample) -> bool:
    # Counters only go down when the process behind them restarted (a new pod).
    return current.accepted < baseline.accepted or any(
        current.rejected.get(status, 0.0) < count for status, count in baseline.rejected.items()
    )


def evaluate(baseline: HealthSample, current: HealthSample, limits: Thresholds) -> list[Check]:
    """The gate's checks for ``current``, with counters taken relative to ``baseline``."""
    checks = [Check("ready", current.ready, current.ready_detail)]
    # After a restart every counter counts from zero: the whole sample is the delta.
    base = HealthSample(True, "", 0.0, {}, None) if _restarted(baseline, current) else baseline
    accepted = current.accepted - base.accepted
    errors = sum(
        count - base.rejected.get(status, 0.0)
        for status, count in current.rejected.items()
        if status in limits.error_statuses
    )
    answered = accepted + errors
    rate = errors / answered if answered else 0.0
    checks.append(
        Check(
            "error-rate",
            rate <= limits.max_error_rate,
            f"{rate:.2%} server errors ({errors:.0f} refused batches, {accepted:.0f} acked "
            f"items; limit {limits.max_error_rate:.2%})",
            fatal=rate > limits.max_error_rate,
        )
    )
    if current.lag is None:
        checks.append(Check("lag", False, "no lag source reported"))
    else:
        checks.append(
            Check(
                "lag",
                current.lag <= limits.max_lag,
                f"{current.lag:.0f} {current.lag_unit} behind (limit {limits.max_lag:.0f})",
            )
        )
    return checks


class HealthProbe(Protocol):
    """Takes one sample of a stack's data plane."""

    def sample(self, stack: str) -> HealthSample:
        """Observe ``stack`` now; raise :class:`ProbeError` when it cannot be observed."""


class LagSource(Protocol):
    """Reports how far consumption is behind, for probes whose service has no backlog."""

    unit: str

    def lag(self, stack: str) -> float:
        """Current lag of ``stack``; raise :class:`ProbeError` when unknown."""


def parse_metrics(text: str) -> tuple[float, dict[int, float], float | None]:
    """Accepted items, refused batches by status and the backlog gauge from a scrape."""
    accepted = 0.0
    rejected: dict[int, float] = {}
    backlog: float | None = None
    try:
        families = list(text_string_to_metric_families(text))
    except ValueError as exc:
        raise ProbeError(f"malformed /metrics: {exc}") from None
    names = {family.name for family in families}
    # A labelled counter with no children yet has HELP/TYPE lines but no samples.
    missing = {ACCEPTED_METRIC, REJECTED_METRIC} - {f"{n}_total" for n in names} - names
    if missing:
        raise ProbeError(f"/metrics lacks {', '.join(sorted(missing))}")
    for family in families:
        for sample in family.samples:
            if sample.name == ACCEPTED_METRIC:
                accepted += sample.value
            elif sample.name == REJECTED_METRIC:
                status = int(sample.labels.get("status", "0"))
                rejected[status] = rejected.get(status, 0.0) + sample.value
            elif sample.name == BACKLOG_METRIC:
                backlog = sample.value
    return accepted, rejected, backlog


@dataclass
class HttpHealthProbe:
    """Scrapes ``/readyz`` and ``/metrics`` of each stack's ingest endpoint.

    ``endpoints`` maps a stack to the base URL of its ingest service as seen from where
    the rollout runs (a port-forward or an internal load balancer in CI). With
    ``lag_source`` set (Kafka in production) lag comes from there instead of the
    embedded buffer's backlog gauge.
    """

    endpoints: Mapping[str, str]
    lag_source: LagSource | None = None
    timeout_s: float = 5.0
    transport: httpx.BaseTransport | None = None
    _client: httpx.Client | None = field(default=None, init=False, repr=False)

    def _http(self) -> httpx.Client:
        if self._client is None:
            self._client = httpx.Client(timeout=self.timeout_s, transport=self.transport)
        return self._client

    def close(self) -> None:
        """Close the HTTP connection pool."""
        if self._client is not None:
            self._client.close()
            self._client = None

    def sample(self, stack: str) -> HealthSample:
        """GET ``/readyz`` and ``/metrics`` of ``stack``'s ingest."""
        base = self.endpoints.get(stack)
        if base is None:
            raise ProbeError(f"no health endpoint configured for stack {stack!r}")
        base = base.rstrip("/")
        try:
            ready = self._http().get(f"{base}/readyz")
            metrics = self._http().get(f"{base}/metrics")
        except httpx.HTTPError as exc:
            raise ProbeError(f"{base}: {type(exc).__name__}: {exc}") from None
        if metrics.status_code != 200:
            raise ProbeError(f"{base}/metrics answered {metrics.status_code}")
        accepted, rejected, backlog = parse_metrics(metrics.text)
        up = ready.status_code == 200 and _status_up(ready)
        detail = f"/readyz {ready.status_code}" + ("" if up else f": {ready.text[:200]}")
        lag, unit = backlog, "bytes"
        if self.lag_source is not None:
            lag, unit = self.lag_source.lag(stack), self.lag_source.unit
        return HealthSample(up, detail, accepted, rejected, lag, unit)


def _status_up(response: httpx.Response) -> bool:
    try:
        body = response.json()
    except ValueError:
        return False
    return isinstance(body, dict) and body.get("status") == "UP"


@dataclass
class KafkaConsumerLag:
    """Lag of a Kafka consumer group over a topic: log-end minus committed, summed.

    The Flink job commits its offsets to the group on every checkpoint, so this is how
    many acked events the counters have not taken in yet. A partition the group has never
    committed counts from the log start.
    """

    bootstrap: Mapping[str, str]
    group: str
    topic: str
    unit: str = "records"
    timeout_s: float = 10.0

    def lag(self, stack: str) -> float:
        """Sum over the topic's partitions of (high watermark - committed offset)."""
        from confluent_kafka import Consumer, KafkaException, TopicPartition  # noqa: PLC0415

        servers = self.bootstrap.get(stack)
        if servers is None:
            raise ProbeError(f"no Kafka bootstrap configured for stack {stack!r}")
        consumer = Consumer(
            {"bootstrap.servers": servers, "group.id": self.group, "enable.auto.commit": False}
        )
        try:
            meta = consumer.list_topics(self.topic, timeout=self.timeout_s)
            topic = meta.topics.get(self.topic)
            if topic is None or topic.error is not None or not topic.partitions:
                raise ProbeError(f"{servers}: topic {self.topic!r} not found")
            parts = [TopicPartition(self.topic, p) for p in sorted(topic.partitions)]
            committed = consumer.committed(parts, timeout=self.timeout_s)
            total = 0
            for tp in committed:
                low, high = consumer.get_watermark_offsets(tp, timeout=self.timeout_s)
                start = tp.offset if tp.offset >= 0 else low
                total += max(0, high - start)
            return float(total)
        except KafkaException as exc:
            raise ProbeError(f"{servers}: {exc}") from None
        finally:
            consumer.close()


@dataclass
class ScriptedProbe:
    """Test double: plays back a list of samples (or errors) per stack, then repeats the last."""

    script: Mapping[str, Sequence[HealthSample | ProbeError]]
    taken: dict[str, int] = field(default_factory=dict)

    def sample(self, stack: str) -> HealthSample:
        """The next scripted sample of ``stack``."""
        steps = self.script.get(stack)
        if not steps:
            raise ProbeError(f"nothing scripted for {stack!r}")
        index = self.taken.get(stack, 0)
        self.taken[stack] = index + 1
        step = steps[min(index, len(steps) - 1)]
        if isinstance(step, ProbeError):
            raise step
        return step


def healthy_sample(accepted: float = 0.0, lag: float = 0.0) -> HealthSample:
    """A sample of a ready plane with ``accepted`` items and no refusals."""
    return HealthSample(True, "/readyz 200", accepted, {}, lag)


@dataclass(frozen=True)
class GateSettings:
    """How long the gate watches a stack.

    ``soak_s``: how long every check must hold continuously; ``timeout_s``: when to give
    up on a stack that never gets there; ``interval_s``: time between samples.
    """

    timeout_s: float = 600.0
    interval_s: float = 10.0
    soak_s: float = 60.0

    def __post_init__(self) -> None:
        if not (self.interval_s > 0 and self.soak_s >= 0 and self.timeout_s >= self.soak_s):
            raise RolloutError("gate: need interval > 0, soak >= 0 and timeout >= soak")


@dataclass(frozen=True)
class GateResult:
    """The gate's verdict on one stack, with the last checks it made."""

    ok: bool
    checks: tuple[Check, ...]
    waited_s: float
    gated: bool = True  # False: nothing was watched (dry run, preview)

    @property
    def summary(self) -> str:
        """The failed checks (or all of them when healthy), one line."""
        shown = [c for c in self.checks if not c.ok] or list(self.checks)
        return "; ".join(f"{c.name}: {c.detail}" for c in shown)


class Gate(Protocol):
    """What the rollout waits on after applying a stack."""

    def wait(self, stack: str) -> GateResult:
        """Block until ``stack`` is judged healthy or not."""


@dataclass
class HealthGate:
    """Samples a stack until every check has held for the soak period (see module doc)."""

    probe: HealthProbe
    thresholds: Thresholds = Thresholds()
    settings: GateSettings = GateSettings()
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep

    def _try(self, stack: str) -> HealthSample | ProbeError:
        try:
            return self.probe.sample(stack)
        except ProbeError as exc:
            return exc

    def wait(self, stack: str) -> GateResult:
        """Watch ``stack``; pass after ``soak_s`` healthy, fail on errors or timeout."""
        start = self.clock()
        baseline: HealthSample | None = None
        healthy_since: float | None = None
        checks: list[Check] = [Check("probe", False, "no sample yet")]
        while True:
            taken = self._try(stack)
            now = self.clock()
            if isinstance(taken, ProbeError):
                checks = [Check("probe", False, str(taken))]
                healthy_since = None
            elif baseline is None:
                baseline = taken
                checks = evaluate(taken, taken, self.thresholds)
                healthy_since = now if all(c.ok for c in checks) else None
            else:
                checks = evaluate(baseline, taken, self.thresholds)
                if any(c.fatal for c in checks):
                    return GateResult(False, tuple(checks), now - start)
                if all(c.ok for c in checks):
                    healthy_since = now if healthy_since is None else healthy_since
                else:
                    healthy_since = None
            if healthy_since is not None and now - healthy_since >= self.settings.soak_s:
                return GateResult(True, tuple(checks), now - start)
            if now - start >= self.settings.timeout_s:
                return GateResult(False, tuple(checks), now - start)
            self.sleep(self.settings.interval_s)


@dataclass(frozen=True)
class SkippedGate:
    """The gate of a dry run or a preview: nothing was changed, so nothing to watch."""

    reason: str = "skipped (dry run)"

    def wait(self, stack: str) -> GateResult:
        """Always passes, saying why."""
        return GateResult(True, (Check("gate", True, self.reason),), 0.0, gated=False)


def load_endpoints(pairs: Iterable[str]) -> dict[str, str]:
    """``STACK=URL`` pairs (from ``--health-url``) as a mapping."""
    out: dict[str, str] = {}
    for pair in pairs:
        stack, sep, url = pair.partition("=")
        if not sep or not stack or not url.startswith(("http://", "https://")):
            raise RolloutError(f"--health-url: expected STACK=http(s)://HOST[:PORT], got {pair!r}")
        out[stack] = url
    return out
