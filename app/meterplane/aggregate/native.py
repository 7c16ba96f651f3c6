"""The aggregator's native core (``_native.c``), or None where it is not compiled.

``make setup`` (and the app image's build) compiles it next to its source with
``build_native``; an install that skipped that step (a plain ``pip install``) runs the
Python reference path, which behaves the same, more slowly.
``NativeCounting`` keeps the core's picture of a ``CounterBook`` current: the catalog's
meters, and every period the book has opened (a counter's slot, by index). The book
remains the only state: the core returns what a frame adds to each slot, and
``NativeCounting.merge`` applies it with the counters' own ``merge``.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from meterplane.core.catalog import Operator
from meterplane.core.counters import CounterBook, CounterKey, Part

try:
    from meterplane.aggregate import _native as core
except ImportError:
    core = None  # type: ignore[assignment]

__all__ = ["NativeCounting", "Scan", "core"]


class Scan(NamedTuple):
    """What ``_native.scan_events`` returns for an event frame (see its comment)."""

    n: int  # events in the frame
    fresh: list[int] | None  # indices of the first copies (None: every event)
    customers: list[str]  # the first copies' customer ids
    stamps: bytes  # their timestamps, int64 µs (time of receipt where none was given)
    unparsed: list[int]  # positions whose timestamp is left to msgspec
    columns: tuple[tuple[bytes, bytes], ...]  # raw-row string columns, then payloads
    to_python: list[int]  # positions of the events left to the Python path whole
    applied: int
    unmetered: int
    parts: list[Part]  # what the core counted, per counter


# The kinds as ``_native.c`` numbers them (``K_COUNT`` ...).
KIND_CODES = {"COUNT": 0, "SUM": 1, "AVG": 2, "MAX": 3, "MIN": 4, "LATEST": 5, "UNIQUE": 6}


def _string_filters(filters: Any) -> list[tuple[str, list[str]]] | None:
    """A meter's filters as (dimension, allowed strings), or None when one of them is not
    EQUALS or IN over strings (its events are then counted by the Python path)."""
    out = []
    for f in filters:
        want = f.value
        if f.operator is Operator.EQUALS and isinstance(want, str):
            out.append((f.dimension, [want]))
        elif (
            f.operator is Operator.IN
            and isinstance(want, list)
            and all(isinstance(w, str) for w in want)
        ):
            out.append((f.dimension, list(want)))
        else:
            return None
    return out


class NativeCounting:
    """A ``CounterBook``'s meters and periods in the native core (needs ``core``)."""

    def __init__(self, book: CounterBook) -> None:
        self.book = book
        self.generation = -1
        self.meters: Any = None
        self.slots: list[Any] = []
        self._index: dict[CounterKey, int] = {}
        self._features: dict[str, int] = {}

    def sync(self) -> Any:
        """Tell the core about periods opened since the last call (all of them after a new
        catalog or a restore); return the ``Meters`` to scan with."""
        book = self.book
        if book.generation != self.generation:
            self._rebuild()
        while book.opened:
            customer, feature = cf = book.opened.pop()
            fi = self._features.get(feature)
            if fi is None:  # a usage feature (no meter): never counted by the core
                continue
            self.meters.set_periods(
                customer, fi, [(s[0], s[4], self._slot_index(s)) for s in book.periods(cf)]
            )
        while book.resources_used:
            ck = book.resources_used.pop()
            base = self._index.get((ck[0], ck[1], ck[2], ""))
            if base is None:  # not a period the core counts into (yet)
                continue
            start, end, _, _, end_cmp = self.slots[base]
            slot = (start, end, book.counters[ck], ck, end_cmp)
            self.meters.set_resource(base, ck[3], self._slot_index(slot))
        return self.meters

    def _rebuild(self) -> None:
        book = self.book
        self.generation = book.generation
        config: list[tuple[str, bool, list[tuple[int, int, str | None, Any]]]] = []
        self._features = {}
        for name, features in book.catalog.meters_by_event.items():
            meters = []
            python_only = False
            for f in features:
                assert f.meter is not None  # meters_by_event only holds metered features
                fi = self._features.setdefault(f.id, len(self._features))
                agg = f.meter.aggregation
                filters = _string_filters(f.meter.filters)
                python_only = python_only or filters is None
                meters.append((fi, KIND_CODES[agg.function.value], agg.field, filters or []))
            config.append((name, python_only, meters))
        self.meters = core.Meters(config)
        self.slots = []
        self._index = {}
        book.opened = set(book.opened_periods())

    def _slot_index(self, slot: Any) -> int:
        i = self._index.get(slot[3])
        if i is None:
            i = self._index[slot[3]] = len(self.slots)
            self.slots.append(slot)
        return i

    def merge(self, counted: list[Part]) -> None:
        """Apply what the core counted for a frame to the book's counters."""
        slots, dirty = self.slots, self.book.dirty
        for part in counted:
            slot = slots[part[0]]
            slot[2].merge(part)
            dirty.add(slot[3])
