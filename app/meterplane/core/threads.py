"""Threads whose operating-system name is their Python name.

``top -H``, ``ps -L``, py-spy and ``/proc/<pid>/task/<tid>/comm`` then tell the aggregator
from the request thread and the fsync thread (all "python" otherwise), and a benchmark can
read each one's CPU time from ``/proc``.
"""

from __future__ import annotations

import ctypes
import sys
import threading

_PR_SET_NAME = 15  # prctl(2); Linux keeps 15 bytes of a thread's name
# The interpreter's own symbols, libc's among them: no library search (``find_library``
# runs ``ldconfig`` in a subprocess) at the import of every module that starts a thread.
_libc = ctypes.CDLL(None) if sys.platform == "linux" else None


def name_os_thread(name: str) -> None:
    """Set the calling thread's OS-level name (Linux only; elsewhere nothing)."""
    if _libc is not None:
        _libc.prctl(_PR_SET_NAME, name.encode()[:15], 0, 0, 0)


class NamedThread(threading.Thread):
    """A ``threading.Thread`` that carries its name down to the operating system."""

    def run(self) -> None:
        name_os_thread(self.name)
        super().run()
