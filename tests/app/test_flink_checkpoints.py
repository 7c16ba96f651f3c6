"""The checkpoint a restarted local-mode Flink job resumes from."""

from __future__ import annotations

import os
from pathlib import Path

from meterplane_flink.checkpoints import latest_checkpoint

_SECOND = 1_000_000_000


def _checkpoint(root: Path, job: str, number: int, completed_at: int | None) -> Path:
    """A checkpoint directory with a state file; ``_metadata`` only if it completed."""
    chk = root / job / f"chk-{number}"
    chk.mkdir(parents=True)
    (chk / "state").write_bytes(b"x")
    if completed_at is not None:
        (chk / "_metadata").write_bytes(b"m")
        os.utime(chk / "_metadata", ns=(completed_at, completed_at))
    os.utime(chk, ns=(completed_at or 0, completed_at or 0))
    return chk


def test_none_before_any_checkpoint_completed(tmp_path: Path) -> None:
    assert latest_checkpoint(tmp_path) is None
    _checkpoint(tmp_path, "job-a", 1, None)  # in progress: no _metadata yet
    assert latest_checkpoint(tmp_path) is None


def test_the_last_completed_wins_over_one_still_in_progress(tmp_path: Path) -> None:
    _checkpoint(tmp_path, "job-a", 4, 10 * _SECOND)
    latest = _checkpoint(tmp_path, "job-a", 5, 11 * _SECOND)
    _checkpoint(tmp_path, "job-a", 6, None)
    assert latest_checkpoint(tmp_path) == latest


def test_an_older_checkpoint_being_discarded_is_not_taken_for_the_latest(tmp_path: Path) -> None:
    """Deleting a discarded checkpoint's files touches its directory, not its _metadata."""
    oldest = _checkpoint(tmp_path, "job-a", 3, 9 * _SECOND)
    latest = _checkpoint(tmp_path, "job-a", 6, 12 * _SECOND)
    (oldest / "state").unlink()  # the discard has begun: the directory is now the newest
    assert oldest.stat().st_mtime_ns > latest.stat().st_mtime_ns
    assert latest_checkpoint(tmp_path) == latest


def test_a_later_job_resumes_from_its_own_last_checkpoint(tmp_path: Path) -> None:
    """A job started afresh numbers from 1 again: completion time decides, not the number."""
    _checkpoint(tmp_path, "job-a", 40, 10 * _SECOND)
    latest = _checkpoint(tmp_path, "job-b", 2, 20 * _SECOND)
    assert latest_checkpoint(tmp_path) == latest


def test_the_number_breaks_a_tie_in_completion_time(tmp_path: Path) -> None:
    _checkpoint(tmp_path, "job-a", 7, 10 * _SECOND)
    latest = _checkpoint(tmp_path, "job-a", 8, 10 * _SECOND)
    assert latest_checkpoint(tmp_path) == latest
