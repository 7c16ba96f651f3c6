"""A stack with the customer's existing key creates no key and uses that one everywhere."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pulumi
import pytest
import yaml

from tests.infra.harness import REPO, Rendered, check, of_type, one, render_program

EXISTING = "arn:aws:kms:us-west-2:123456789012:key/0f4e5a52-3c6e-4e1b-9a1e-6d1c8f2b7a90"


@pytest.fixture(scope="module")
def byok(tmp_path_factory: pytest.TempPathFactory) -> Rendered:
    directory: Path = tmp_path_factory.mktemp("stacks")
    document = yaml.safe_load((REPO / "stacks" / "Pulumi.acme-dev.yaml").read_text())
    document["config"]["meterplane:archive"]["kmsKeyId"] = EXISTING
    (directory / "Pulumi.acme-dev.yaml").write_text(yaml.safe_dump(document))
    return render_program("acme-dev", directory)


@pulumi.runtime.test
def test_existing_key_is_used_and_no_key_is_created(byok: Rendered) -> Any:
    view = byok.view

    def verify(args: list[Any]) -> None:
        (key_arn,) = args
        assert key_arn == EXISTING
        assert view.of_type("aws:kms/key:Key") == []
        cluster = one(view, "aws:eks/cluster:Cluster")
        assert cluster.inputs["encryptionConfig"]["provider"]["keyArn"] == EXISTING
        (sse,) = of_type(
            view,
            "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration",
        )
        assert (
            sse.inputs["rules"][0]["applyServerSideEncryptionByDefault"]["kmsMasterKeyId"]
            == EXISTING
        )
        storage_classes = [r for r in view.resources if r.type.endswith(":StorageClass")]
        assert storage_classes[0].inputs["parameters"]["kmsKeyId"] == EXISTING

    return check(byok.program.foundation.key.arn).apply(verify)
