"""Which retained checkpoint a restarted local-mode job resumes from (stdlib only).

Flink writes a checkpoint's ``_metadata`` once, when the checkpoint completes, and writes
nothing more into that directory; discarding a checkpoint that fell out of the retained
ones deletes its files one by one, so for a moment the directory of an *older* checkpoint
is the one most recently modified while its ``_metadata`` still exists. The latest
checkpoint is therefore the one whose ``_metadata`` was written last, never the directory
touched last. Numbers break ties (a restored job numbers on from the checkpoint it
restored, but a job started afresh in the same directory numbers from 1 again).
"""

from __future__ import annotations

from pathlib import Path


def latest_checkpoint(checkpoint_dir: Path) -> Path | None:
    """The most recently completed checkpoint under ``checkpoint_dir`` (any job id)."""
    done: list[tuple[int, int, Path]] = []
    for metadata in checkpoint_dir.glob("*/chk-*/_metadata"):
        try:
            written = metadata.stat().st_mtime_ns
        except FileNotFoundError:
            continue  # discarded between the listing and now
        chk = metadata.parent
        done.append((written, int(chk.name.removeprefix("chk-")), chk))
    return max(done)[2] if done else None
