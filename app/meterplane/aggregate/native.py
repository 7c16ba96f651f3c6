"""The aggregator's native core (``_native.c``), or None where it is not compiled.

``make setup`` compiles it next to its source; an install that skipped that step (a plain
``pip install``) runs the Python reference path, which behaves the same, more slowly.
"""

from __future__ import annotations

try:
    from meterplane.aggregate import _native as core
except ImportError:
    core = None  # type: ignore[assignment]

__all__ = ["core"]
