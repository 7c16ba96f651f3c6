"""One version: bumping a stack's ``release.version`` moves every image and nothing else.

``meterplane plan --json`` of a stack before and after the bump differs only in the image
tags of the workloads (every Meterplane workload on the new tag) and in the migration Job
(its per-release name and image); and the migration Job is ordered before every workload.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import pytest
import yaml

from components.k8s import names
from meterplane import __version__
from meterplane.commands import migrate
from meterplane.plan import RenderedResource, RenderedStack
from meterplane.plan._engine import PlanSession, run_infra_program
from meterplane.rollout.runner import meterplane_images

REPO = Path(__file__).resolve().parents[2]
NEW = "9.8.7-rc.1"
JOB = "kubernetes:batch/v1:Job"
METERPLANE = str(Path(sys.executable).parent / "meterplane")


def plan_json(stack: str, stacks_dir: Path) -> dict[str, Any]:
    done = subprocess.run(
        [METERPLANE, "plan", stack, "--json", "--stacks-dir", str(stacks_dir)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    data: dict[str, Any] = json.loads(done.stdout)
    return data


def bumped_stacks(tmp_path: Path, stack: str, version: str) -> Path:
    document = yaml.safe_load((REPO / "stacks" / f"Pulumi.{stack}.yaml").read_text())
    release = dict(document["config"].get("meterplane:release") or {})
    release["version"] = version
    document["config"]["meterplane:release"] = release
    (tmp_path / f"Pulumi.{stack}.yaml").write_text(yaml.safe_dump(document))
    return tmp_path


def _retag(value: Any, old: str, new: str) -> Any:
    if isinstance(value, dict):
        return {k: _retag(v, old, new) for k, v in value.items()}
    if isinstance(value, list):
        return [_retag(v, old, new) for v in value]
    if isinstance(value, str) and value.startswith("ghcr.io/meterplane/"):
        return re.sub(rf":{re.escape(old)}$", f":{new}", value)
    return value


@pytest.mark.slow
@pytest.mark.parametrize("stack", ["acme-prod", "initech-prod"])
def test_a_version_bump_changes_only_image_tags_and_the_migration_job(
    tmp_path: Path, stack: str
) -> None:
    before = plan_json(stack, REPO / "stacks")
    after = plan_json(stack, bumped_stacks(tmp_path, stack, NEW))
    old = {r["urn"]: r for r in before["resources"]}
    new = {r["urn"]: r for r in after["resources"]}
    assert old.keys() == new.keys()  # no resource added, removed or renamed

    changed = {urn for urn in old if old[urn]["inputs"] != new[urn]["inputs"]}
    jobs = {urn for urn in changed if old[urn]["type"] == JOB}
    assert len(jobs) == 1
    (job,) = jobs
    assert old[job]["inputs"]["metadata"]["name"] == "migrate-" + __version__.replace(".", "-")
    assert new[job]["inputs"]["metadata"]["name"] == "migrate-9-8-7-rc-1"

    for urn in changed:
        retagged = _retag(old[urn]["inputs"], __version__, NEW)
        if urn == job:
            retagged["metadata"]["name"] = new[urn]["inputs"]["metadata"]["name"]
        assert retagged == new[urn]["inputs"], f"{urn} changed beyond its image tags"

    def images(plan: dict[str, Any]) -> set[str]:
        rendered = RenderedStack(
            plan["stack"], {}, [RenderedResource.from_json(r) for r in plan["resources"]]
        )
        return {image for _, image in meterplane_images(rendered)}

    assert images(after) == {
        f"ghcr.io/meterplane/meterplane:{NEW}",
        f"ghcr.io/meterplane/flink-job:{NEW}",
    }
    assert {old[u]["type"] for u in changed} >= {
        "kubernetes:apps/v1:Deployment",
        "kubernetes:flink.apache.org/v1beta1:FlinkDeployment",
        "kubernetes:batch/v1:CronJob",
        JOB,
    }


class _DependencyRecorder:
    """Wraps the mock monitor's RegisterResource to keep each resource's dependencies."""

    def __init__(self, session: PlanSession) -> None:
        self.by_name: dict[str, tuple[str, set[str]]] = {}
        register = session.monitor.RegisterResource

        def recording(request: Any) -> Any:
            response = register(request)
            self.by_name[request.name] = (response.urn, set(request.dependencies))
            return response

        session.monitor.RegisterResource = recording  # type: ignore[method-assign]


@pytest.mark.slow
def test_the_migration_job_runs_before_every_app_workload() -> None:
    session = PlanSession("acme-prod", REPO / "stacks")
    recorder = _DependencyRecorder(session)
    with warnings.catch_warnings():
        # The provider SDKs warn at import about classes the program never uses.
        warnings.filterwarnings(
            "ignore",
            category=DeprecationWarning,
            module=r"pulumi_(aws|gcp|azure_native|kubernetes)(\..*)?$",
        )
        session.run(run_infra_program)
    rendered = session.rendered()
    (job,) = rendered.of_type(JOB)
    job_urn = job.urn
    workloads = [
        r
        for r in rendered.resources
        if r.type
        in (
            "kubernetes:apps/v1:Deployment",
            "kubernetes:batch/v1:CronJob",
            "kubernetes:flink.apache.org/v1beta1:FlinkDeployment",
        )
    ]
    assert len(workloads) >= 4
    for workload in workloads:
        _, deps = recorder.by_name[workload.name]
        assert job_urn in deps, f"{workload.name} does not wait for the migration Job"
    # The Job runs `meterplane migrate` with arguments the command accepts.
    (container,) = job.inputs["spec"]["template"]["spec"]["containers"]
    assert container["args"][0] == "migrate"
    parser = argparse.ArgumentParser()
    migrate.add_arguments(parser)
    parsed = parser.parse_args(container["args"][1:])
    assert parsed.wait > 0
    assert parsed.replicated  # prod ClickHouse is a replicated cluster
    # Migrations own the schema: they connect as the writer, never as the read-only user.
    url = f"http://{names.CLICKHOUSE_WRITER}:$(CLICKHOUSE_PASSWORD)@{names.CLICKHOUSE_HOST}"
    assert {"name": "METERPLANE_CLICKHOUSE_URL", "value": url} in container["env"]
    # ... and the Job itself waits for ClickHouse.
    _, job_deps = recorder.by_name[job.name]
    (chi,) = rendered.of_type("kubernetes:clickhouse.altinity.com/v1:ClickHouseInstallation")
    assert chi.urn in job_deps
