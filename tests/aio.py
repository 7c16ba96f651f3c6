"""Run a coroutine without disturbing the thread's current event loop.

``asyncio.run`` unsets the current loop when it finishes. The Pulumi mocks that the
infrastructure tests install at collection time hold futures on that loop, so a later
mock render would wait forever on a loop nobody runs. Tests use ``run`` instead.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run`` on a private loop; the current loop is left as it was."""
    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(coro)
    finally:
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()
