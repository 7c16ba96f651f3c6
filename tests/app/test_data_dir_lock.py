"""One process per data directory: a second one is refused with one line, not a traceback."""

from __future__ import annotations

import pytest

from meterplane.cli import main
from meterplane.plane import EmbeddedPlane
from tests.app.conftest import API_KEY


@pytest.mark.parametrize("command", [["serve"], ["rebuild"], ["rebuild", "--apply"]])
def test_a_directory_in_use_is_refused_in_one_line(
    plane: EmbeddedPlane,
    command: list[str],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("METERPLANE_API_KEYS", API_KEY)
    data_dir = plane.settings.data_dir
    assert (
        main([*command, "--data-dir", str(data_dir), *(["--port", "0"] * (command == ["serve"]))])
        == 2
    )
    err = capsys.readouterr().err
    assert err == (
        f"meterplane: {data_dir} is in use by another meterplane process"
        " (one process per data directory: stop the other first)\n"
    )
    # the plane holding it carries on
    assert plane.aggregator.error is None
