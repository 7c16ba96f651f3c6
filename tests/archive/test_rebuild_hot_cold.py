"""``rebuild`` over hot + cold equals the live counters: after serve's scheduled archiver
moved old days out, after an archive interrupted between upload and delete (rows in both
tiers), and — the control — not when a cold part is missing."""

from __future__ import annotations

import io
import time
from pathlib import Path

import pytest
from rich.console import Console

from meterplane.archive.cold import cold_parts
from meterplane.archive.exporter import Archiver, Unit
from meterplane.archive.schedule import start_archiver
from meterplane.archive.stores import FileStore
from meterplane.cli import main
from meterplane.commands.rebuild import rebuild
from meterplane.core.settings import Settings
from meterplane.plane import EmbeddedPlane
from tests.archive.support import API_KEY, Seeded, cold_rows, engine_of, hot_rows, ident

RETENTION_DAYS = 7


def _rebuild(seeded: Seeded, store: FileStore) -> tuple[int, str]:
    out = io.StringIO()
    status = rebuild(seeded.data_dir, None, False, Console(file=out, width=200), store)
    return status, out.getvalue()


def test_scheduled_archive_in_serve_then_rebuild_equals_live(
    seeded: Seeded,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    cold_dir = tmp_path / "cold"
    settings = Settings(
        data_dir=seeded.data_dir,
        api_keys=(API_KEY,),
        archive_url=f"file://{cold_dir}",
        hot_retention_days=RETENTION_DAYS,
        archive_interval_s=0.2,
    )
    plane = EmbeddedPlane(settings)
    plane.start()
    try:
        scheduler = start_archiver(plane.engine, settings)  # as serve does: the plane's engine
        deadline = time.monotonic() + 60
        while scheduler.runs < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        scheduler.stop()
    finally:
        plane.stop()
    assert scheduler.last_error is None
    assert scheduler.runs >= 2
    store = FileStore(cold_dir)
    cold = cold_rows(store)
    with engine_of(seeded.data_dir) as engine:
        hot = hot_rows(engine)
    assert len(cold) > 300
    assert len(hot) > 100
    assert {ident(r) for r in hot} | {ident(r) for r in cold} == seeded.identities

    # The command as an operator runs it (settings from the environment).
    monkeypatch.setenv("METERPLANE_ARCHIVE_URL", f"file://{cold_dir}")
    monkeypatch.delenv("METERPLANE_ARCHIVE_KMS_KEY", raising=False)
    status = main(["rebuild", "--data-dir", str(seeded.data_dir)])
    out = capsys.readouterr().out
    assert status == 0, out
    assert f"from {len(seeded.identities)} raw rows" in out
    assert "drift in 0" in out


def test_rows_in_both_tiers_are_counted_once(seeded: Seeded, tmp_path: Path) -> None:
    store = FileStore(tmp_path / "cold")

    class Stop(Exception):
        pass

    def stop_before_delete(step: str, unit: Unit) -> None:
        if step == "verified":
            raise Stop(str(unit))

    with engine_of(seeded.data_dir) as engine:
        archiver = Archiver(engine, store, RETENTION_DAYS, clock=lambda: seeded.now)
        # Archive the first days completely, then stop one between verify and delete.
        for _ in range(3):
            archiver.archive_unit(archiver.units(archiver.cutoff_day())[0])
        archiver.fault = stop_before_delete
        with pytest.raises(Stop):
            archiver.run()
        both = {ident(r) for r in hot_rows(engine)} & {ident(r) for r in cold_rows(store)}
    assert len(both) > 5  # the interrupted day is hot and cold at once

    status, out = _rebuild(seeded, store)
    assert status == 0, out
    assert f"from {len(seeded.identities)} raw rows" in out


def test_a_missing_cold_part_is_reported_as_drift(seeded: Seeded, tmp_path: Path) -> None:
    store = FileStore(tmp_path / "cold")
    with engine_of(seeded.data_dir) as engine:
        Archiver(engine, store, RETENTION_DAYS, clock=lambda: seeded.now).run()
    lost = cold_parts(store)[3]
    (store.root / lost.manifest_key).unlink()

    status, out = _rebuild(seeded, store)
    assert status == 1
    assert f"from {len(seeded.identities) - lost.manifest.rows} raw rows" in out
    assert "drift in 0" not in out
