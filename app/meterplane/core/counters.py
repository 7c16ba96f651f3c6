"""Counter state: exact, and independent of the order events arrive in.

The embedded aggregator and the Flink job see the same events in different orders
(Kafka partitions, retries, replays), yet must produce identical numbers. So:
- integer values add exactly as Python ints; float values accumulate in Shewchuk's
  non-overlapping partials (the algorithm behind ``math.fsum``), whose sum is exact, and
  are rounded once when read;
- LATEST picks the maximum of (timestamp, idempotency key), never "the last one seen";
- usage reports order by (timestamp, idempotency key): the latest SET wins and only
  DELTAs ordered after it add to it;
- UNIQUE keeps the exact set of distinct values (1 and 1.0 are the same value, "1" is not).

A counter is addressed by ``(customer, feature, period_start, resource)``; ``resource`` is
"" for the customer-wide counter, which every event also updates.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterator
from typing import Any, ClassVar

from meterplane.core.catalog import Catalog, Feature
from meterplane.core.meters import Predicate, compile_filters
from meterplane.core.periods import period_bounds

Number = int | float
CounterKey = tuple[str, str, int, str]
# What a batch of events adds to one counter, summarized by the aggregator's native core:
# (slot, count, int sum, float partials, best for MAX/MIN, (ts, key, value) for LATEST,
# UNIQUE tokens).
Part = tuple[
    int, int, int, list[float], Number | None, tuple[int, str, Number] | None, list[str] | None
]


def _grow(partials: list[float], x: float) -> None:
    """Add ``x`` to a list of non-overlapping partials exactly (Shewchuk 1997)."""
    i = 0
    for p in partials:
        y = p
        if abs(x) < abs(y):
            x, y = y, x
        hi = x + y
        lo = y - (hi - x)
        if lo:
            partials[i] = lo
            i += 1
        x = hi
    partials[i:] = [x]


class ExactSum:
    """An exact, order-independent sum of ints and floats."""

    __slots__ = ("ints", "partials")

    def __init__(self, ints: int = 0, partials: list[float] | None = None) -> None:
        self.ints = ints
        self.partials = partials or []

    def add(self, v: Number) -> None:
        """Add one value."""
        if isinstance(v, int):
            self.ints += v
        else:
            _grow(self.partials, v)

    def value(self) -> Number:
        """The sum, rounded once."""
        if not self.partials:
            return self.ints
        return self.ints + math.fsum(self.partials)

    def state(self) -> list[Any]:
        """Serializable state."""
        return [self.ints, self.partials]

    def merge(self, ints: int, partials: list[float]) -> None:
        """Add another exact sum, given as its int part and its float partials."""
        self.ints += ints
        for p in partials:
            _grow(self.partials, p)


class Counter:
    """Base of every counter kind."""

    kind: ClassVar[str]
    __slots__ = ()

    def add(self, value: Any, ts: int, key: str) -> None:
        """Apply one matching event or report."""
        raise TypeError(f"{type(self).__name__} cannot apply a value")

    def value(self) -> Number | None:
        """The counter's current value (None: no value yet, e.g. MAX of nothing)."""
        raise TypeError(type(self).__name__)

    def state(self) -> list[Any]:
        """Serializable state for checkpoints."""
        raise TypeError(type(self).__name__)

    def merge(self, part: Part) -> None:
        """Apply what a batch of events adds, summarized (the native core's ``Acc``)."""
        raise TypeError(type(self).__name__)


class CountCounter(Counter):
    """COUNT: the number of matching events."""

    kind = "COUNT"
    __slots__ = ("n",)

    def __init__(self, n: int = 0) -> None:
        self.n = n

    def add(self, value: Any, ts: int, key: str) -> None:
        self.n += 1

    def merge(self, part: Part) -> None:
        self.n += part[1]

    def value(self) -> Number:
        return self.n

    def state(self) -> list[Any]:
        return [self.n]


class SumCounter(Counter):
    """SUM of a numeric dimension."""

    kind = "SUM"
    __slots__ = ("s",)

    def __init__(self, ints: int = 0, partials: list[float] | None = None) -> None:
        self.s = ExactSum(ints, partials)

    def add(self, value: Any, ts: int, key: str) -> None:
        self.s.add(value)

    def merge(self, part: Part) -> None:
        self.s.merge(part[2], part[3])

    def value(self) -> Number:
        return self.s.value()

    def state(self) -> list[Any]:
        return self.s.state()


class AvgCounter(Counter):
    """AVG of a numeric dimension: exact sum over count."""

    kind = "AVG"
    __slots__ = ("n", "s")

    def __init__(self, ints: int = 0, partials: list[float] | None = None, n: int = 0) -> None:
        self.s = ExactSum(ints, partials)
        self.n = n

    def add(self, value: Any, ts: int, key: str) -> None:
        self.s.add(value)
        self.n += 1

    def merge(self, part: Part) -> None:
        self.s.merge(part[2], part[3])
        self.n += part[1]

    def value(self) -> Number | None:
        if not self.n:
            return None
        if not self.s.partials:
            return self.s.ints / self.n  # int / int: one rounding, like the float path
        return (self.s.ints + math.fsum(self.s.partials)) / self.n

    def state(self) -> list[Any]:
        return [*self.s.state(), self.n]


class MaxCounter(Counter):
    """MAX of a numeric dimension. Of equal values an int wins over a float (2 over 2.0),
    so the value is the same whatever order the events come in."""

    kind = "MAX"
    __slots__ = ("v",)

    def __init__(self, v: Number | None = None) -> None:
        self.v = v

    def add(self, value: Any, ts: int, key: str) -> None:
        v = self.v
        if v is None or value > v or (value == v and value.__class__ is int):
            self.v = value

    def merge(self, part: Part) -> None:
        if part[4] is not None:
            self.add(part[4], 0, "")

    def value(self) -> Number | None:
        return self.v

    def state(self) -> list[Any]:
        return [self.v]


class MinCounter(MaxCounter):
    """MIN of a numeric dimension."""

    kind = "MIN"
    __slots__ = ()

    def add(self, value: Any, ts: int, key: str) -> None:
        v = self.v
        if v is None or value < v or (value == v and value.__class__ is int):
            self.v = value


class LatestCounter(Counter):
    """LATEST: the value of the event with the greatest (timestamp, idempotency key)."""

    kind = "LATEST"
    __slots__ = ("key", "ts", "v")

    def __init__(self, ts: int = -1, key: str = "", v: Number | None = None) -> None:
        self.ts, self.key, self.v = ts, key, v

    def add(self, value: Any, ts: int, key: str) -> None:
        if (ts, key) > (self.ts, self.key):
            self.ts, self.key, self.v = ts, key, value

    def merge(self, part: Part) -> None:
        if part[5] is not None:
            ts, key, value = part[5]
            self.add(value, ts, key)

    def value(self) -> Number | None:
        return self.v

    def state(self) -> list[Any]:
        return [self.ts, self.key, self.v]


def unique_token(v: Any) -> str:
    """Canonical text of a value for UNIQUE: numbers by value, strings and booleans apart."""
    if isinstance(v, bool):
        return "b:1" if v else "b:0"
    if isinstance(v, int | float):
        return f"n:{float(v)!r}" if abs(v) < 2**53 else f"n:{v!r}"
    return f"s:{v}"


class UniqueCounter(Counter):
    """UNIQUE: exact count of distinct values within the period."""

    kind = "UNIQUE"
    __slots__ = ("seen",)

    def __init__(self, seen: list[str] | None = None) -> None:
        self.seen: set[str] = set(seen or ())

    def add(self, value: Any, ts: int, key: str) -> None:
        self.seen.add(unique_token(value))

    def merge(self, part: Part) -> None:
        self.seen.update(part[6] or ())

    def value(self) -> Number:
        return len(self.seen)

    def state(self) -> list[Any]:
        return [sorted(self.seen)]


class UsageCounter(Counter):
    """Usage reports: the latest SET, plus the DELTAs ordered after it.

    A SET may arrive late, anywhere in the lateness window, and then only the DELTAs ordered
    after it count; so DELTAs are kept one by one, in order. Once no report still to come
    can be timestamped before an instant (``settle``), a SET can no longer land among the
    DELTAs before it: they are kept as one exact sum. Without that, a feature that takes
    only DELTAs (seats added and removed, over all time) kept every report it was ever sent
    and wrote them all into every checkpoint."""

    kind = "USAGE"
    __slots__ = ("deltas", "set_", "settled", "settled_before", "sum")

    def __init__(
        self,
        set_: list[Any] | None = None,
        deltas: list[list[Any]] | None = None,
        settled: list[Any] | None = None,
    ) -> None:
        self.set_: tuple[int, str, Number] | None = (set_[0], set_[1], set_[2]) if set_ else None
        self.deltas: list[tuple[int, str, Number]] = [(d[0], d[1], d[2]) for d in deltas or ()]
        self.sum = ExactSum()
        for d in self.deltas:
            self.sum.add(d[2])
        # the DELTAs timestamped before ``settled_before`` (µs), as their sum
        self.settled_before = 0 if settled is None else settled[0]
        self.settled = ExactSum() if settled is None else ExactSum(settled[1], list(settled[2]))

    def add(self, value: Any, ts: int, key: str) -> None:
        is_set, v = value
        if self.set_ is not None and (ts, key) <= self.set_[:2]:
            return  # superseded by a later SET
        if not is_set:
            if ts < self.settled_before:
                self.settled.add(v)  # (not expected: no report comes from before it)
                return
            bisect.insort(self.deltas, (ts, key, v))
            self.sum.add(v)
            return
        self.set_ = (ts, key, v)
        self.settled = ExactSum()  # every settled DELTA is older than any SET still to come
        cut = bisect.bisect_right(self.deltas, (ts, key, math.inf))
        if cut:
            del self.deltas[:cut]
            self.sum = ExactSum()
            for d in self.deltas:
                self.sum.add(d[2])

    def settle(self, before: int) -> None:
        """Keep the DELTAs timestamped before ``before`` as their sum only. The caller
        promises that no report still to come is timestamped before ``before``
        (``settle_before``)."""
        if before <= self.settled_before:
            return
        self.settled_before = before
        cut = bisect.bisect_left(self.deltas, (before,))
        if not cut:
            return
        for d in self.deltas[:cut]:
            self.settled.add(d[2])
        del self.deltas[:cut]
        self.sum = ExactSum()
        for d in self.deltas:
            self.sum.add(d[2])

    def value(self) -> Number:
        base = self.set_[2] if self.set_ is not None else 0
        total = ExactSum()
        total.add(base)
        for part in (self.sum.ints, *self.sum.partials, self.settled.ints, *self.settled.partials):
            total.add(part)
        return total.value()

    def state(self) -> list[Any]:
        state = [list(self.set_) if self.set_ else None, [list(d) for d in self.deltas]]
        if self.settled_before:
            state.append([self.settled_before, *self.settled.state()])
        return state


# How much earlier than the lateness window allows a report may still be timestamped, when
# it was received on a clock behind the one that received the latest report applied (two
# ingest replicas, or one clock stepped back): settling leaves a day for that.
SETTLE_MARGIN_US = 86_400 * 1_000_000


def settle_before(received_us: int, lateness_us: int) -> int:
    """The instant before which no report still to come can be timestamped, once a report
    received at ``received_us`` was applied: reports are refused when older than the
    lateness window at their receipt, and the ones still to come are received later."""
    return received_us - lateness_us - SETTLE_MARGIN_US


# (period start, period end or None, counter, its key, end as a number for comparisons)
_Slot = tuple[int, int | None, Counter, CounterKey, int]
_NO_END = 1 << 62  # later than any instant: "all time" never ends
KINDS: dict[str, type[Counter]] = {
    c.kind: c
    for c in (
        CountCounter,
        SumCounter,
        AvgCounter,
        MaxCounter,
        MinCounter,
        LatestCounter,
        UniqueCounter,
        UsageCounter,
    )
}


class Outcome:
    """What applying one record did, for metrics."""

    __slots__ = ("applied", "retired", "unmetered")

    def __init__(self) -> None:
        self.applied = 0
        self.unmetered = 0
        self.retired = 0  # counts meant for a period already retired (``CounterBook.retire``)


class CounterBook:
    """Every counter of a data plane, with the catalog that says what counts."""

    def __init__(self, catalog: Catalog) -> None:
        self.counters: dict[CounterKey, Counter] = {}
        self.period_end: dict[CounterKey, int | None] = {}
        self.dirty: set[CounterKey] = set()
        # (customer, feature) -> the current period's (start, end, counter, key): most events
        # fall in it, so the common case is one lookup, with no calendar arithmetic.
        self._slots: dict[tuple[str, str], _Slot] = {}
        # (customer, feature) -> (starts, slots) of every period met so far, by start: a
        # late event finds its period here instead of in calendar arithmetic again.
        self._periods: dict[tuple[str, str], tuple[list[int], list[_Slot]]] = {}
        # For a mirror of the periods (the aggregator's native core): bumped whenever the
        # periods are forgotten, and the (customer, feature)s that opened one since.
        self.generation = 0
        self.opened: set[tuple[str, str]] = set()
        self.resources_used: set[CounterKey] = set()  # resources' counters counted into
        # periods ending at or before this instant may have been retired (``retire``)
        self.retired_before = 0
        self.set_catalog(catalog)

    def set_catalog(self, catalog: Catalog) -> None:
        """Count with a new catalog from now on (``rebuild`` re-buckets history)."""
        self.catalog = catalog
        self._slots = {}
        self._periods = {}  # a new catalog may move anchors and periods
        self.generation += 1
        self.opened = set()
        self.resources_used = set()
        meters: dict[str, list[tuple[str, Predicate | None, str, str | None]]] = {}
        for name, features in catalog.meters_by_event.items():
            for f in features:
                assert f.meter is not None  # meters_by_event only holds metered features
                agg = f.meter.aggregation
                meters.setdefault(name, []).append(
                    (f.id, compile_filters(f.meter.filters), agg.function.value, agg.field)
                )
        self._meters = meters

    def _slot(self, kind: str, customer: str, feature: str, ts: int) -> _Slot | None:
        """The counter for ``ts``'s period; becomes the cached slot unless ``ts`` is late.
        None for a period that may have been retired: counting into a fresh counter there
        would store a partial value over the one that was stored."""
        cf = (customer, feature)
        known = self._periods.get(cf)
        if known is None:
            known = self._periods[cf] = ([], [])
        starts, slots = known
        i = bisect.bisect_right(starts, ts) - 1
        if i >= 0 and ts < slots[i][4]:
            slot = slots[i]
        else:
            reset, anchor = self.catalog.period_spec(customer, feature)
            start, end = period_bounds(reset, anchor, ts)
            if end is not None and end <= self.retired_before:
                return None
            ck = (customer, feature, start, "")
            counter = self.counters.get(ck)
            if counter is None:
                counter = self.counters[ck] = KINDS[kind]()
                self.period_end[ck] = end
            slot = (start, end, counter, ck, _NO_END if end is None else end)
            starts.insert(i + 1, start)
            slots.insert(i + 1, slot)
            self.opened.add(cf)
        cached = self._slots.get(cf)
        if cached is None or slot[0] >= cached[0]:
            self._slots[cf] = slot  # late events leave the current slot alone
        return slot

    def _bump(
        self, kind: str, customer: str, feature: str, ts: int, resource: str, value: Any, key: str
    ) -> bool:
        slot = self._slots.get((customer, feature))
        if slot is None or not slot[0] <= ts < slot[4]:
            slot = self._slot(kind, customer, feature, ts)
            if slot is None:
                return False
        slot[2].add(value, ts, key)
        self.dirty.add(slot[3])
        if resource:
            self._bump_resource(kind, slot, resource, value, ts, key)
        return True

    def _bump_resource(
        self, kind: str, slot: _Slot, resource: str, value: Any, ts: int, key: str
    ) -> None:
        """The per-resource counter beside the customer-wide one in ``slot``."""
        ck = (slot[3][0], slot[3][1], slot[0], resource)
        counter = self.counters.get(ck)
        if counter is None:
            counter = self.counters[ck] = KINDS[kind]()
            self.period_end[ck] = slot[1]
        counter.add(value, ts, key)
        self.dirty.add(ck)
        self.resources_used.add(ck)

    def apply_event(
        self,
        customer: str,
        name: str,
        key: str,
        ts: int,
        dims: dict[str, Any],
        resource: str,
        out: Outcome,
    ) -> None:
        """Count one (already deduplicated) event for every feature whose meter matches."""
        # ``_bump`` inlined: this loop runs for every matching meter of every event.
        slots = self._slots
        applied = 0
        for feature_id, pred, kind, field in self._meters.get(name, ()):
            if pred is not None and not pred(dims):
                continue
            value: Any = None
            if field is not None:
                value = dims.get(field)
                if kind == "UNIQUE":
                    if value is None:
                        out.unmetered += 1
                        continue
                elif value.__class__ is not int and value.__class__ is not float:
                    out.unmetered += 1  # missing, string or boolean where a number is needed
                    continue
            slot = slots.get((customer, feature_id))
            if slot is None or not slot[0] <= ts < slot[4]:
                slot = self._slot(kind, customer, feature_id, ts)
                if slot is None:
                    out.retired += 1
                    continue
            slot[2].add(value, ts, key)
            self.dirty.add(slot[3])
            if resource:
                self._bump_resource(kind, slot, resource, value, ts, key)
            applied += 1
        out.applied += applied

    def apply_usage(
        self,
        customer: str,
        feature: str,
        key: str,
        ts: int,
        value: Number,
        is_set: bool,
        resource: str,
        out: Outcome,
    ) -> None:
        """Apply one (already deduplicated) usage report."""
        f: Feature | None = self.catalog.features.get(feature)
        if f is not None and f.meter is not None:
            out.unmetered += 1  # metered features count events, not reports
            return
        if self._bump("USAGE", customer, feature, ts, resource, (is_set, value), key):
            out.applied += 1
        else:
            out.retired += 1

    def opened_periods(self) -> list[tuple[str, str]]:
        """Every (customer, feature) with a period opened."""
        return list(self._periods)

    def periods(self, cf: tuple[str, str]) -> list[_Slot]:
        """The periods opened for a (customer, feature), by start."""
        known = self._periods.get(cf)
        return [] if known is None else list(known[1])

    def value(self, customer: str, feature: str, start: int, resource: str = "") -> Number | None:
        """The value of one counter, or None if nothing was counted."""
        c = self.counters.get((customer, feature, start, resource))
        return None if c is None else c.value()

    def items(self) -> Iterator[tuple[CounterKey, int | None, Number | None]]:
        """Every counter as (key, period end, value)."""
        for ck, c in self.counters.items():
            yield ck, self.period_end[ck], c.value()

    def settle(self, before: int) -> None:
        """Fold the usage DELTAs timestamped before ``before`` into their counters' sums
        (``UsageCounter.settle``): values do not change, state stops growing with them."""
        for counter in self.counters.values():
            if counter.__class__ is UsageCounter and counter.deltas:
                counter.settle(before)

    def retire(self, before: int) -> int:
        """Forget the counters of periods that ended at or before ``before`` and whose last
        value is stored (not dirty); return how many. Give ``before`` as for ``settle``: no
        record still to come can land in those periods, so they are final, and memory and
        checkpoints stop growing with history (a DAY period a day, per customer, feature
        and resource). A record that lands in one all the same (a lateness window
        lengthened since) is not counted (``Outcome.retired``): ``rebuild`` finds it in
        the raw rows, reports the drift and repairs it."""
        gone = {
            ck
            for ck, end in self.period_end.items()
            if end is not None and end <= before and ck not in self.dirty
        }
        self.retired_before = max(self.retired_before, before)
        if not gone:
            return 0
        for ck in gone:
            del self.counters[ck]
            del self.period_end[ck]
        self.resources_used -= gone
        for cf, (_, slots) in list(self._periods.items()):
            kept = [slot for slot in slots if slot[3] not in gone]
            if not kept:
                del self._periods[cf]
            elif len(kept) != len(slots):
                self._periods[cf] = ([slot[0] for slot in kept], kept)
        self._slots = {cf: s for cf, s in self._slots.items() if s[3] not in gone}
        self.generation += 1  # the native core's mirror of the periods starts over
        self.opened = set()
        return len(gone)

    # ---------------------------------------------------------------- checkpoints

    def snapshot(self) -> list[list[Any]]:
        """Serializable state of every counter."""
        return [[*ck, self.period_end[ck], c.kind, c.state()] for ck, c in self.counters.items()]

    def restore(self, rows: list[list[Any]], retired_before: int = 0) -> None:
        """Replace all state with a snapshot (taken when ``retired_before`` was that)."""
        self.counters.clear()
        self.period_end.clear()
        self.dirty.clear()
        self._slots = {}
        self._periods = {}
        self.generation += 1
        self.opened = set()
        self.resources_used = set()
        self.retired_before = retired_before
        for customer, feature, start, resource, end, kind, state in rows:
            ck = (customer, feature, start, resource)
            self.counters[ck] = KINDS[kind](*state)
            self.period_end[ck] = end
