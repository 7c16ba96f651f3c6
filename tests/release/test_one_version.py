"""One version: the CLI, the package, the images and every stack's default release agree."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

from components import versions
from infra.config import ReleaseConfig
from meterplane import __version__

REPO = Path(__file__).resolve().parents[2]


def test_cli_version_is_the_package_version() -> None:
    done = subprocess.run(
        [str(Path(sys.executable).parent / "meterplane"), "--version"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert done.stdout.strip() == f"meterplane {__version__}"
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert pyproject["project"]["dynamic"] == ["version"]
    assert pyproject["tool"]["hatch"]["version"]["path"] == "app/meterplane/__init__.py"


def test_images_and_the_default_release_follow_the_version() -> None:
    assert ReleaseConfig().version == __version__
    assert versions.app_image(__version__).endswith(f":{__version__}")
    assert versions.flink_job_image(__version__).endswith(f":{__version__}")
    assert versions.app_image("3.1.4") == f"{versions.APP_IMAGE_REPOSITORY}:3.1.4"


def test_main_workflow_tags_images_from_the_same_place() -> None:
    workflow = (REPO / ".github" / "workflows" / "main.yml").read_text()
    assert "from meterplane import __version__" in workflow
    assert "versions.app_image(__version__)" in workflow
    assert "versions.flink_job_image(__version__)" in workflow


def test_flink_version_agrees_across_deployment_job_and_image() -> None:
    """The FlinkDeployment, the PyFlink pin and the job image's base are one Flink."""
    root = REPO
    pins = (root / "app/meterplane_flink/requirements.txt").read_text()
    assert f"apache-flink=={versions.FLINK_VERSION}\n" in pins
    dockerfile = (root / "docker/Dockerfile.flink-job").read_text()
    bases = [ln.split()[1] for ln in dockerfile.splitlines() if ln.startswith("FROM flink:")]
    assert bases
    assert all(b.startswith(f"flink:{versions.FLINK_VERSION}-") for b in bases)
    major, minor, _ = versions.FLINK_VERSION.split(".")
    assert f"v{major}_{minor}" == versions.FLINK_VERSION_ENUM
