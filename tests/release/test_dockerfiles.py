"""The app and Flink-job Dockerfiles, checked statically (Docker does not run here)."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from components.k8s.flink import FLINK_UID
from components.k8s.pods import RUN_AS_USER
from tests.release.dockerlint import check, final_user, image_pinned, parse, stage_bases

REPO = Path(__file__).resolve().parents[2]
APP = REPO / "docker" / "Dockerfile.app"
FLINK = REPO / "docker" / "Dockerfile.flink-job"


@pytest.mark.parametrize("dockerfile", [APP, FLINK], ids=["app", "flink-job"])
def test_dockerfile_passes_the_rules(dockerfile: Path) -> None:
    assert check(dockerfile, REPO) == []


def test_app_image_builds_from_the_lock_on_the_projects_python() -> None:
    text = APP.read_text()
    assert "uv sync --frozen --no-dev" in text
    requires = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["requires-python"]
    minor = re.search(r">=\s*3\.(\d+)", requires)
    assert minor is not None
    for base in stage_bases(APP):
        assert base.startswith(f"python:3.{minor.group(1)}."), base
    assert final_user(APP) == f"{RUN_AS_USER}:{RUN_AS_USER}"  # the pod's runAsUser


def _pins() -> dict[str, str]:
    requirements = REPO / "app" / "meterplane_flink" / "requirements.txt"
    pins = {}
    for line in requirements.read_text().splitlines():
        name, sep, version = line.partition("==")
        if sep:
            pins[name.strip().lower()] = version.strip()
    return pins


def test_flink_image_runs_pyflink_on_the_same_flink_release() -> None:
    pyflink = _pins()["apache-flink"]
    flink_bases = [b for b in stage_bases(FLINK) if b.startswith("flink:")]
    assert flink_bases
    for base in flink_bases:
        assert base.startswith(f"flink:{pyflink}-"), (base, pyflink)
    text = FLINK.read_text()
    assert "uv pip sync" in text
    assert "app/meterplane_flink/requirements.txt" in text
    # The Kafka connector built for this Flink minor (x.y.z-<flink minor>).
    connector = re.search(r"flink-sql-connector-kafka-(\d+\.\d+\.\d+)-(\d+\.\d+)\.jar", text)
    assert connector is not None
    assert pyflink.startswith(connector.group(2) + ".")
    assert final_user(FLINK) == f"{FLINK_UID}:{FLINK_UID}"  # the FlinkDeployment's runAsUser


def test_the_checker_catches_what_it_is_for(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text(
        "FROM python:3.11 AS build\n"
        "RUN pip install uv && apt-get install -y curl\n"
        "COPY missing.txt /x\n"
        "FROM ubuntu:latest\n"
        "COPY --from=somewhere /a /b\n"
        "ADD https://example.com/x.jar /opt/x.jar\n"
        "USER root\n"
    )
    problems = "\n".join(check(bad, tmp_path))
    assert "FROM python:3.11: base image not pinned" in problems
    assert "FROM ubuntu:latest: base image not pinned" in problems
    assert "unpinned pip install" in problems
    assert "apt-get install without --no-install-recommends" in problems
    assert "missing.txt is not in the build context" in problems
    assert "COPY --from=somewhere is neither a stage nor pinned" in problems
    assert "without --checksum=sha256" in problems
    assert "final stage runs as root" in problems
    single = tmp_path / "Single"
    single.write_text("FROM python:3.11.14-slim\nUSER 10001\n")
    assert check(single, tmp_path) == ["not multi-stage (build and runtime stages)"]


def test_pinning_rule() -> None:
    assert image_pinned("flink:2.2.1-scala_2.12-java17")
    assert image_pinned("ghcr.io/astral-sh/uv:0.13.8")
    assert image_pinned("python@sha256:" + "a" * 64)
    assert not image_pinned("python:3.11-slim")
    assert not image_pinned("python")
    assert not image_pinned("flink:latest")
    assert not image_pinned("flink:${FLINK_VERSION}")


def test_parse_joins_continuations_and_reads_flags() -> None:
    (stage,) = parse(
        "FROM a:1.2.3 AS x\n# comment\nRUN echo 1 \\\n  && echo 2\nCOPY --from=x --chown=1:1 a b\n"
    )
    run, copy = stage.instructions
    assert run.args == ["echo 1  && echo 2"]
    assert copy.flags == {"from": "x", "chown": "1:1"}
    assert copy.args == ["a", "b"]


def test_copy_of_a_file_outside_the_dockerignore_allowlist_is_flagged(tmp_path: Path) -> None:
    (tmp_path / "kept").mkdir()
    (tmp_path / "kept" / "a.py").write_text("")
    (tmp_path / "secret.env").write_text("")
    dockerfile = tmp_path / "Dockerfile.x"
    dockerfile.write_text(
        "FROM python:3.11.14-slim AS b\nCOPY kept /k\nCOPY secret.env /s\n"
        "FROM python:3.11.14-slim\nCOPY --from=b /k /k\nUSER 10001:10001\n"
    )
    (tmp_path / "Dockerfile.x.dockerignore").write_text("**\n!kept/**\n")
    assert check(dockerfile, tmp_path) == [
        "line 3: secret.env is excluded by Dockerfile.x.dockerignore"
    ]


def test_app_image_compiles_the_native_core_as_make_setup_does() -> None:
    text = APP.read_text()
    build, _, runtime = text.partition("AS runtime")
    # in the build stage, after the package is installed, with the module make runs
    installed = build.index("uv sync --frozen --no-dev --no-editable")
    compiled = build.index("-m meterplane.aggregate.build_native")
    assert installed < compiled
    assert "import meterplane.aggregate._native" in build[compiled:]  # or the build fails
    assert "gcc" in build
    assert "gcc" not in runtime
    assert "-m meterplane.aggregate.build_native" in (REPO / "Makefile").read_text()
    # a host's compiled core never rides along in the context
    assert "**/*.so" in (REPO / "docker" / "Dockerfile.app.dockerignore").read_text()
