"""``meterplane sync`` and ``meterplane control-plane`` refuse bad settings with one line."""

from __future__ import annotations

from pathlib import Path

import pytest

from meterplane.cli import main
from tests.sync.harness import free_port


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({}, "METERPLANE_CONTROL_PLANE_URL: required"),
        ({"METERPLANE_CONTROL_PLANE_URL": "http://cp.example.com"}, "must be https://"),
        (
            {"METERPLANE_CONTROL_PLANE_URL": "https://cp.example.com"},
            "METERPLANE_CONTROL_PLANE_TOKEN",
        ),
        (
            {
                "METERPLANE_CONTROL_PLANE_URL": "https://cp.example.com",
                "METERPLANE_CONTROL_PLANE_TOKEN": "t" * 20,
            },
            "METERPLANE_CONTROL_PLANE_ENVIRONMENT",
        ),
        (
            {
                "METERPLANE_CONTROL_PLANE_URL": "https://cp.example.com",
                "METERPLANE_CONTROL_PLANE_TOKEN": "t" * 20,
                "METERPLANE_CONTROL_PLANE_ENVIRONMENT": "bad env!",
            },
            "METERPLANE_CONTROL_PLANE_ENVIRONMENT",
        ),
        (
            {
                "METERPLANE_CONTROL_PLANE_URL": "https://cp.example.com",
                "METERPLANE_CONTROL_PLANE_TOKEN": "t" * 20,
                "METERPLANE_CONTROL_PLANE_ENVIRONMENT": "acme-prod",
                "METERPLANE_SYNC_POLL_INTERVAL_S": "0",
            },
            "METERPLANE_SYNC_POLL_INTERVAL_S",
        ),
    ],
)
def test_sync_names_the_bad_setting(
    env: dict[str, str],
    named: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    for k in (
        "METERPLANE_CONTROL_PLANE_URL",
        "METERPLANE_CONTROL_PLANE_TOKEN",
        "METERPLANE_CONTROL_PLANE_ENVIRONMENT",
    ):
        monkeypatch.delenv(k, raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    assert main(["sync", "--data-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert named in err


def test_control_plane_requires_an_admin_token_and_well_formed_environments(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("METERPLANE_CONTROL_PLANE_ADMIN_TOKEN", raising=False)
    assert main(["control-plane", "--data-dir", str(tmp_path)]) == 2
    assert "METERPLANE_CONTROL_PLANE_ADMIN_TOKEN" in capsys.readouterr().err
    args = ["control-plane", "--data-dir", str(tmp_path), "--admin-token", "a" * 16]
    assert main([*args, "--environment", "prod=short"]) == 2
    assert "--environment" in capsys.readouterr().err


def test_sync_names_an_unreachable_clickhouse(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for k, v in {
        "METERPLANE_CONTROL_PLANE_URL": "https://cp.example.com",
        "METERPLANE_CONTROL_PLANE_TOKEN": "t" * 20,
        "METERPLANE_CONTROL_PLANE_ENVIRONMENT": "acme-prod",
        "METERPLANE_CLICKHOUSE_URL": f"http://127.0.0.1:{free_port()}",
    }.items():
        monkeypatch.setenv(k, v)
    assert main(["sync", "--data-dir", str(tmp_path)]) == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith("meterplane: METERPLANE_CLICKHOUSE_URL: cannot connect")
