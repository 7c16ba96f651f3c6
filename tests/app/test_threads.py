"""The plane's threads carry their names down to the operating system."""

from __future__ import annotations

import threading
from pathlib import Path

from meterplane.core.threads import NamedThread
from tests.app.conftest import make_plane


def _os_thread_names() -> set[str]:
    return {p.read_text().strip() for p in Path("/proc/self/task").glob("*/comm")}


def test_a_named_thread_is_named_for_the_os_truncated_to_15_bytes() -> None:
    seen: list[str] = []
    done = threading.Event()

    def body() -> None:
        seen.append(Path(f"/proc/self/task/{threading.get_native_id()}/comm").read_text().strip())
        done.set()

    t = NamedThread(target=body, name="a-rather-long-thread-name", daemon=True)
    t.start()
    assert done.wait(5)
    t.join(5)
    assert seen == ["a-rather-long-t"]


def test_the_planes_threads_show_by_name(tmp_path: Path) -> None:
    plane = make_plane(tmp_path / "data")
    try:
        assert {"aggregator", "log-fsync"} <= _os_thread_names()
    finally:
        plane.stop()
