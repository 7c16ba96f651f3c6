"""Settings from ``METERPLANE_*`` variables: parsing, one-line errors, and the help listing."""

from __future__ import annotations

from pathlib import Path

import pytest

from meterplane.cli import main
from meterplane.core.errors import ConfigError
from meterplane.core.settings import PREFIX, Settings, load_settings

KEY = "k" * 16


def test_variables_are_read_and_flags_override() -> None:
    env = {"METERPLANE_HTTP_PORT": "9000", "METERPLANE_API_KEYS": f"{KEY}, {KEY}x ,"}
    settings = load_settings(env, data_dir=Path("/srv/plane"))
    assert settings.http_port == 9000
    assert settings.api_keys == (KEY, KEY + "x")
    assert settings.data_dir == Path("/srv/plane")
    assert load_settings(env, http_port=9100).http_port == 9100
    assert load_settings({"METERPLANE_HTTP_PORT": ""}).http_port == 8080  # empty: the default


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"METERPLANE_HTTP_PORT": "70000"}, "METERPLANE_HTTP_PORT: "),
        ({"METERPLANE_MAX_BODY_BYTES": "lots"}, "METERPLANE_MAX_BODY_BYTES: "),
        ({"METERPLANE_API_KEYS": "short"}, "METERPLANE_API_KEYS: Value error, each API key"),
        ({"METERPLANE_LATENESS_DAYS": "0"}, "METERPLANE_LATENESS_DAYS: "),
    ],
)
def test_a_bad_setting_is_one_line_naming_the_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_settings(env)
    assert str(err.value).startswith(message)
    assert "\n" not in str(err.value)


def test_serve_help_lists_every_variable_with_its_default(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["serve", "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    rows = {
        line.split()[0]: line.split(None, 1)[1]
        for line in out.splitlines()
        if line.strip().startswith(PREFIX)
    }
    assert set(rows) == {PREFIX + name.upper() for name in Settings.model_fields}
    assert rows["METERPLANE_HTTP_PORT"] == "default 8080"
    assert rows["METERPLANE_MAX_BODY_BYTES"] == f"default {8 * 1024 * 1024}"
    assert rows["METERPLANE_DEDUP_WINDOW_S"] == "default 86400"
    assert rows["METERPLANE_API_KEYS"].startswith("required")
    assert rows["METERPLANE_ARCHIVE_URL"] == "unset"


def test_serve_without_a_key_stops_with_one_line(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("METERPLANE_API_KEYS", raising=False)
    assert main(["serve", "--data-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("meterplane: METERPLANE_API_KEYS: required")
    assert err.count("\n") == 1
