"""A changed catalog file is put in force without a restart; a broken one is refused and
the catalog in force stays."""

from __future__ import annotations

import os
import time
from pathlib import Path

import httpx

from meterplane.core.catalog import DEFAULT_CATALOG
from meterplane.localplane import ServeProcess
from meterplane.plane import CatalogWatcher, EmbeddedPlane
from tests.app.conftest import make_plane

PRO_CALLS = "api-calls: {usageLimit: 10000, resetPeriod: MONTH}"


def _catalog_file(tmp_path: Path) -> Path:
    path = tmp_path / "catalog.yaml"
    path.write_text(DEFAULT_CATALOG.read_text(encoding="utf-8"), encoding="utf-8")
    return path


def _replace(path: Path, old: str, new: str) -> None:
    """Write the new version beside it and rename over it, as editors and ConfigMaps do."""
    text = path.read_text(encoding="utf-8")
    assert old in text
    tmp = path.with_suffix(".new")
    tmp.write_text(text.replace(old, new), encoding="utf-8")
    os.replace(tmp, path)


def _limit(plane: EmbeddedPlane) -> float | int | None:
    return plane.decider.check("acme", "api-calls").usageLimit  # pro 10,000 + add-on 5,000


def test_reload_refuse_and_recover(tmp_path: Path) -> None:
    path = _catalog_file(tmp_path)
    plane = make_plane(tmp_path / "data", catalog=path)
    try:
        watcher = CatalogWatcher(path, plane.catalog)
        assert _limit(plane) == 15_000
        assert not watcher.poll()  # unchanged: nothing to do

        _replace(path, PRO_CALLS, "api-calls: {usageLimit: 120000, resetPeriod: MONTH}")
        assert watcher.poll()
        assert _limit(plane) == 125_000
        assert plane.aggregator.book.catalog is plane.catalog.get()  # counting follows too

        _replace(path, "planId: pro, addons: [extra-calls]", "planId: platinum, addons: []")
        assert not watcher.poll()
        assert watcher.last_error is not None
        assert "platinum" in watcher.last_error  # the dangling plan is named
        assert _limit(plane) == 125_000  # the catalog in force stayed

        _replace(path, "planId: platinum, addons: []", "planId: pro, addons: []")
        assert watcher.poll()
        assert _limit(plane) == 120_000
        assert (watcher.reloads, watcher.last_error) == (2, None)
    finally:
        plane.stop()


def test_rewritten_in_place_is_seen_by_the_thread(tmp_path: Path) -> None:
    path = _catalog_file(tmp_path)
    plane = make_plane(tmp_path / "data", catalog=path)
    watcher = CatalogWatcher(path, plane.catalog, interval_s=0.05).start()
    try:
        text = path.read_text(encoding="utf-8")
        path.write_text(text.replace(PRO_CALLS, "api-calls: {usageLimit: 7, resetPeriod: MONTH}"))
        deadline = time.monotonic() + 10
        while _limit(plane) != 5_007:
            assert time.monotonic() < deadline, "the change was not picked up"
            time.sleep(0.02)
    finally:
        watcher.stop()
        plane.stop()


def test_serve_puts_an_edited_catalog_in_force(tmp_path: Path) -> None:
    path = _catalog_file(tmp_path)
    with ServeProcess(tmp_path / "plane", env={"METERPLANE_CATALOG": str(path)}) as plane:
        url = f"{plane.base_url}/api/v1/customers/acme/entitlements/check?featureId=api-calls"
        headers = {"X-API-KEY": plane.api_key}
        assert httpx.get(url, headers=headers).json()["usageLimit"] == 15_000
        _replace(path, PRO_CALLS, "api-calls: {usageLimit: 120000, resetPeriod: MONTH}")
        deadline = time.monotonic() + 20  # serve polls every 2 s
        while httpx.get(url, headers=headers).json()["usageLimit"] != 125_000:
            assert time.monotonic() < deadline, "serve did not put the new catalog in force"
            time.sleep(0.1)
