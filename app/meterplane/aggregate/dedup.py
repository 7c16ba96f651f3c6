"""The embedded aggregator's dedup window: every (customerId, idempotencyKey) counted
within the last ``METERPLANE_DEDUP_WINDOW_S``, in memory.

Kept as one set of keys per customer, not one set of (customer, key) pairs: a pair costs a
56-byte tuple per identity on top of the key, and the window holds a day of events (the
README sizes it). Forgetting goes by arrival, a frame at a time, deleting by key: taking
the oldest entry again and again instead scans every entry deleted before it (quadratic).
"""

from __future__ import annotations

from collections import deque
from typing import Any

from meterplane.aggregate.native import core


class DedupWindow:
    """Identities remembered per customer, forgotten in arrival order."""

    __slots__ = ("_arrivals", "_by_customer", "_n")

    def __init__(self) -> None:
        self._by_customer: dict[str, set[str]] = {}
        # (arrival, customers, keys) of each admitted frame's new identities, oldest first
        self._arrivals: deque[tuple[int, list[str], list[str]]] = deque()
        self._n = 0

    def __len__(self) -> int:
        return self._n

    def __contains__(self, ident: tuple[str, str]) -> bool:
        keys = self._by_customer.get(ident[0])
        return keys is not None and ident[1] in keys

    def arrivals(self) -> list[tuple[int, list[tuple[str, str]]]]:
        """(arrival, identities) per remembered frame, oldest first (for inspection)."""
        return [(t, list(zip(cs, ks, strict=True))) for t, cs, ks in self._arrivals]

    def admit(self, customers: list[str], keys: list[str], at: int) -> list[int]:
        """Remember the identities not remembered yet (the first of several copies within
        the lists too), as arrived at ``at``; return their indices."""
        by_customer = self._by_customer
        fresh = []
        for i, (customer, key) in enumerate(zip(customers, keys, strict=True)):
            known = by_customer.get(customer)
            if known is None:
                known = by_customer[customer] = set()
            elif key in known:
                continue
            known.add(key)
            fresh.append(i)
        if len(fresh) == len(keys):
            if keys:  # nothing to forget later: no entry
                self._remember(at, customers, keys)
        elif fresh:
            self._remember(at, [customers[i] for i in fresh], [keys[i] for i in fresh])
        return fresh

    def load(self, customers: list[str], keys: list[str], times: list[int]) -> None:
        """Remember stored identities, given in arrival order (a restart rebuilds the window)."""
        _load(self, customers, keys, times)

    def forget_before(self, cutoff: int) -> None:
        """Forget every identity that arrived before ``cutoff``."""
        arrivals, by_customer = self._arrivals, self._by_customer
        while arrivals and arrivals[0][0] < cutoff:
            _, customers, keys = arrivals.popleft()
            for customer, key in zip(customers, keys, strict=True):
                known = by_customer.get(customer)
                if known is not None:
                    known.discard(key)
                    if not known:
                        del by_customer[customer]
            self._n -= len(keys)

    def _remember(self, at: int, customers: list[str], keys: list[str]) -> None:
        self._arrivals.append((at, customers, keys))
        self._n += len(keys)


def _load(window: Any, customers: list[str], keys: list[str], times: list[int]) -> None:
    """Admit stored identities given in arrival order, one call per arrival time."""
    start = 0
    for i in range(1, len(times) + 1):
        if i == len(times) or times[i] != times[start]:
            window.admit(customers[start:i], keys[start:i], times[start])
            start = i


if core is not None:

    class NativeDedupWindow(core.Dedup):
        """``DedupWindow`` in C (``_native.c``): the same operations, with the identities
        as UTF-8 bytes in one hash table instead of str objects in sets, and what
        ``aggregator`` needs to dedupe an event frame without the interpreter lock."""

        __slots__ = ()
        load = _load


def new_window() -> Any:
    """The native window where it is compiled, else the Python one (same behaviour)."""
    return DedupWindow() if core is None else NativeDedupWindow()
