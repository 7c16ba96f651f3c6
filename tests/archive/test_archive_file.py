"""The archiver's contract on a local ``file://`` store: what moves, what stays, what the
cold tier reads back, and exactly-once across hot and cold when a run is interrupted."""

from __future__ import annotations

import datetime as dt
import io
import json
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from meterplane.archive.cold import cold_parts
from meterplane.archive.errors import (
    ArchiveError,
    ColdCorrupt,
    StoreUnavailable,
    VerificationFailed,
)
from meterplane.archive.exporter import STEPS, Archiver, Unit
from meterplane.archive.layout import day_dir, sha256_hex
from meterplane.archive.schedule import ArchiveScheduler
from meterplane.archive.stores import FileStore, open_store, parse_archive_url
from meterplane.cli import main
from meterplane.commands.archive import archive_once
from meterplane.commands.rebuild import rebuild
from meterplane.core.errors import ConfigError
from meterplane.core.settings import Settings
from meterplane.core.timeutil import from_us
from meterplane.ingest.buffer import LocalLog
from tests.archive.support import (
    DAY_US,
    Seeded,
    cold_rows,
    engine_of,
    hot_rows,
    ident,
    raw_cold_rows,
)

RETENTION_DAYS = 7


def _split(rows: list[dict[str, Any]], cutoff: dt.date) -> tuple[list[Any], list[Any]]:
    old = [r for r in rows if r["timestamp"].date() < cutoff]  # type: ignore[attr-defined]
    return old, [r for r in rows if r not in old]


def test_old_days_move_to_cold_and_read_back_identically(seeded: Seeded, tmp_path: Path) -> None:
    store = FileStore(tmp_path / "cold")
    with engine_of(seeded.data_dir) as engine:
        before = hot_rows(engine)
        archiver = Archiver(
            engine,
            store,
            hot_retention_days=RETENTION_DAYS,
            rows_per_part=20,  # forces hash shards of each day
            clock=lambda: seeded.now,
        )
        report = archiver.run()
        after = hot_rows(engine)
        again = archiver.run()

    cutoff = from_us(seeded.now - RETENTION_DAYS * DAY_US).date()
    old, recent = _split(before, cutoff)
    assert {ident(r) for r in before} == seeded.identities
    assert len(old) > 300
    assert len(recent) > 100
    assert after == recent  # recent rows untouched, old ones gone
    assert cold_rows(store) == old  # every column, exactly as it was hot
    assert report.rows == len(old) == raw_cold_rows(store)
    assert len(report.units) > len({r["timestamp"].date() for r in old})  # type: ignore[attr-defined]
    assert again.rows == 0
    assert again.units == []
    assert report.dropped_partitions == []  # the lateness window still reaches them

    for part in cold_parts(store):
        data = (store.root / part.manifest.object).read_bytes()
        assert part.manifest.size == len(data)
        assert part.manifest.sha256 == sha256_hex(data)
        assert part.manifest.object.startswith(f"events/day={part.day.isoformat()}/part-")
        assert part.manifest.encryption == {"scheme": "none", "requested": None, "reported": None}


def test_sealed_months_are_dropped_whole(seeded: Seeded, tmp_path: Path) -> None:
    store = FileStore(tmp_path / "cold")
    later = seeded.now + 80 * DAY_US  # every month ended more than the lateness window ago
    with engine_of(seeded.data_dir) as engine:
        before = hot_rows(engine)
        report = Archiver(engine, store, RETENTION_DAYS, clock=lambda: later).run()
        parts = engine.query_arrow(
            "SELECT count() AS n FROM system.parts "
            "WHERE database = currentDatabase() AND table = 'events' AND active"
        )
        assert hot_rows(engine) == []
    months = sorted({f"{r['timestamp']:%Y%m}" for r in before})
    assert len(months) == 2
    assert report.dropped_partitions == months
    assert parts.column("n")[0].as_py() == 0
    assert cold_rows(store) == before


class Interrupted(Exception):
    """Raised by the injected fault."""


@pytest.mark.slow
def test_interrupted_at_every_step_then_rerun_leaves_each_event_once(
    seeded: Seeded, tmp_path: Path
) -> None:
    store = FileStore(tmp_path / "cold")
    with engine_of(seeded.data_dir) as engine:
        everything = hot_rows(engine)
        for step in STEPS:
            seen: list[Unit] = []

            def fault(name: str, unit: Unit, step: str = step, seen: list[Unit] = seen) -> None:
                if name == step:
                    seen.append(unit)
                    raise Interrupted(f"{step} of {unit}")

            archiver = Archiver(engine, store, RETENTION_DAYS, clock=lambda: seeded.now)
            archiver.fault = fault
            with pytest.raises(Interrupted):
                archiver.run()
            # Whatever the step: nothing lost, and a unit's rows are hot unless verified.
            hot = {ident(r) for r in hot_rows(engine)}
            cold = {ident(r) for r in cold_rows(store)}
            assert hot | cold == seeded.identities, step
            day_hot = [r for r in hot_rows(engine) if r["timestamp"].date() == seen[0].day]  # type: ignore[attr-defined]
            assert (day_hot == []) == (step == "deleted"), step

        report = Archiver(engine, store, RETENTION_DAYS, clock=lambda: seeded.now).run()
        hot_after = hot_rows(engine)

    cutoff = from_us(seeded.now - RETENTION_DAYS * DAY_US).date()
    old, recent = _split(everything, cutoff)
    assert report.rows > 0
    assert hot_after == recent
    assert cold_rows(store) == old
    # The reruns wrote the same parts again (same rows, same key): no copy is left over.
    assert raw_cold_rows(store) == len(old)


@pytest.mark.slow
def test_killed_mid_export_then_cli_rerun_is_exact(
    seeded: Seeded,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    cold_dir = tmp_path / "cold"
    child = textwrap.dedent(
        f"""
        import os, signal
        from pathlib import Path
        from meterplane.archive.exporter import Archiver
        from meterplane.archive.stores import FileStore
        from meterplane.core.storage import ChdbEngine
        engine = ChdbEngine(Path({str(seeded.data_dir / "chdb")!r}))
        units = []
        def fault(step, unit):
            if step == "exported":
                units.append(unit)
            if step == "uploaded" and len(units) == 2:
                os.kill(os.getpid(), signal.SIGKILL)  # the data object is written, no manifest
        Archiver(engine, FileStore(Path({str(cold_dir)!r})), {RETENTION_DAYS},
                 clock=lambda: {seeded.now}, fault=fault).run()
        """
    )
    killed = subprocess.run(
        [sys.executable, "-c", child], check=False, capture_output=True, timeout=120
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr.decode()[-2000:]
    store = FileStore(cold_dir)
    orphans = [k for k in store.list("events/") if k.endswith(".parquet")]
    assert len(orphans) == 2
    assert len(cold_parts(store)) == 1

    # The rerun is the command an operator runs (in-process: the kill above is the one
    # that needs a process of its own).
    monkeypatch.setenv("METERPLANE_ARCHIVE_URL", f"file://{cold_dir}")
    monkeypatch.setenv("METERPLANE_HOT_RETENTION_DAYS", str(RETENTION_DAYS))
    monkeypatch.delenv("METERPLANE_ARCHIVE_KMS_KEY", raising=False)
    assert main(["archive", "--data-dir", str(seeded.data_dir)]) == 0
    assert capsys.readouterr().out.startswith("archived ")

    with engine_of(seeded.data_dir) as engine:
        hot = hot_rows(engine)
    cold = cold_rows(store)
    assert {ident(r) for r in hot} | {ident(r) for r in cold} == seeded.identities
    assert not {ident(r) for r in hot} & {ident(r) for r in cold}
    assert raw_cold_rows(store) == len(cold)
    manifest = json.loads(store.get(cold_parts(store)[0].manifest_key))
    assert manifest["format"] == 1
    # Exact totals: every counter recomputed from hot + cold equals the live one.
    out = io.StringIO()
    assert rebuild(seeded.data_dir, None, False, Console(file=out), store) == 0, out.getvalue()
    assert f"from {len(seeded.identities)} raw rows" in out.getvalue()
    assert manifest["rows"] > 0


def test_bad_archive_settings_are_one_line_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^METERPLANE_ARCHIVE_URL: .*scheme"):
        open_store("ftp://bucket/x", None)
    with pytest.raises(ConfigError, match=r"^METERPLANE_ARCHIVE_KMS_KEY: required for s3://"):
        open_store("s3://bucket/prefix", None)
    with pytest.raises(ConfigError, match=r"^METERPLANE_ARCHIVE_KMS_KEY: file://"):
        open_store(f"file://{tmp_path}", "some-key")
    loc = parse_archive_url("gs://bucket/a/b/")
    assert (loc.scheme, loc.bucket, loc.prefix) == ("gs", "bucket", "a/b/")


def test_unwritable_directory_fails_before_anything_is_deleted(
    seeded: Seeded, tmp_path: Path
) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")
    with engine_of(seeded.data_dir) as engine:
        before = hot_rows(engine)
        archiver = Archiver(engine, FileStore(blocker / "cold"), RETENTION_DAYS)
        with pytest.raises(ArchiveError, match="not-a-dir"):
            archiver.run()
        assert hot_rows(engine) == before
        # Inside serve the same failure is logged and kept; the schedule carries on.
        scheduler = ArchiveScheduler(archiver, interval_s=3600)
        scheduler.run_once()
        assert isinstance(scheduler.last_error, StoreUnavailable)
        assert scheduler.runs == 1
        assert hot_rows(engine) == before


def test_archive_once_refuses_a_directory_serve_is_using(
    seeded: Seeded, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = Settings(data_dir=seeded.data_dir, archive_url=f"file://{tmp_path / 'cold'}")
    held = LocalLog(seeded.data_dir / "log")  # what a running serve holds
    try:
        assert archive_once(settings) == 1
    finally:
        held.close()
    assert "in use by a running serve" in capsys.readouterr().err
    assert not (tmp_path / "cold").exists()


def test_late_rows_for_an_archived_day_add_a_part_read_once(seeded: Seeded, tmp_path: Path) -> None:
    store = FileStore(tmp_path / "cold")
    with engine_of(seeded.data_dir) as engine:
        archiver = Archiver(engine, store, RETENTION_DAYS, clock=lambda: seeded.now)
        archiver.run()
        first = cold_rows(store)
        day = first[0]["timestamp"].date()
        copy = next(r for r in first if r["timestamp"].date() == day)
        late_ts = int(copy["timestamp"].timestamp() * 1_000_000) + 1
        top = max(int(r["log_pos"]) for r in first) + 10_000
        engine.insert(
            "events",
            {
                # A late event for the archived day, and a later copy of an archived
                # identity (arrived after the dedup window) with a different payload.
                "customer_id": ["acme", copy["customer_id"]],
                "idempotency_key": ["late-1", copy["idempotency_key"]],
                "kind": ["event", "event"],
                "name": ["api_call", "api_call"],
                "timestamp": [late_ts, late_ts],
                "ingested_at": [seeded.now, seeded.now],
                "resource_id": ["", ""],
                "payload": [b'{"late": 1}', b'{"late": 2}'],
                "log_pos": [top, top + 1],
            },
        )
        report = archiver.run()
        assert all(r["timestamp"].date() >= archiver.cutoff_day() for r in hot_rows(engine))
    assert report.rows == 2
    assert len([p for p in cold_parts(store) if p.day == day]) == 2
    assert raw_cold_rows(store) == len(first) + 2
    cold = cold_rows(store)
    assert len(cold) == len(first) + 1  # the later copy is not a second event
    kept = next(r for r in cold if ident(r) == ident(copy))
    assert kept == copy  # the first copy (lowest log position) wins
    assert ("acme", "late-1") in {ident(r) for r in cold}


def test_an_object_altered_in_the_store_is_caught(seeded: Seeded, tmp_path: Path) -> None:
    store = FileStore(tmp_path / "cold")

    def tamper(step: str, unit: Unit) -> None:
        if step == "manifested":  # after upload, before the read-back verification
            for key in store.list(day_dir(unit.day)):
                if key.endswith(".parquet"):
                    path = store.root / key
                    path.write_bytes(path.read_bytes()[:-1] + b"\0")

    with engine_of(seeded.data_dir) as engine:
        before = hot_rows(engine)
        archiver = Archiver(engine, store, RETENTION_DAYS, clock=lambda: seeded.now, fault=tamper)
        with pytest.raises(VerificationFailed, match=r"read back \d+ bytes with SHA-256"):
            archiver.run()
        assert hot_rows(engine) == before  # nothing deleted

    # Altered after archiving: readers refuse the part instead of counting wrong rows.
    part = cold_parts(store)[0]
    (store.root / part.manifest.object).write_bytes(b"PAR1 not really")
    with pytest.raises(ColdCorrupt, match="SHA-256 differ"):
        cold_rows(store)


def test_rows_arriving_during_export_stay_hot_for_the_next_run(
    seeded: Seeded, tmp_path: Path
) -> None:
    store = FileStore(tmp_path / "cold")
    odd = "o'brien\\eu"  # quotes and backslashes travel through the SQL literals intact

    def row(customer: str, key: str, ts: int, pos: int) -> dict[str, list[Any]]:
        return {
            "customer_id": [customer],
            "idempotency_key": [key],
            "kind": ["event"],
            "name": ["api_call"],
            "timestamp": [ts],
            "ingested_at": [seeded.now],
            "resource_id": [""],
            "payload": [b"{}"],
            "log_pos": [pos],
        }

    with engine_of(seeded.data_dir) as engine:
        old_ts = seeded.now - 20 * DAY_US
        engine.insert("events", row(odd, "q1", old_ts, 10_000_000))

        def another_writer(step: str, unit: Unit) -> None:
            # Production: another customer's Kafka partition has lower offsets than the
            # ones just exported; its row lands between export and delete.
            if step == "verified" and unit.day == from_us(old_ts).date():
                engine.insert("events", row("late-co", "z1", old_ts + 1, 3))

        archiver = Archiver(
            engine, store, RETENTION_DAYS, clock=lambda: seeded.now, fault=another_writer
        )
        archiver.run()
        hot = {ident(r) for r in hot_rows(engine)}
        assert (odd, "q1") not in hot
        assert ("late-co", "z1") in hot  # arrived after the export: not deleted
        archiver.fault = None
        archiver.run()
        assert ("late-co", "z1") not in {ident(r) for r in hot_rows(engine)}
    cold = {ident(r) for r in cold_rows(store)}
    assert {(odd, "q1"), ("late-co", "z1")} <= cold
