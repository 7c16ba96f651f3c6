"""Tagging policy: customer, environment and managed-by on everything that takes tags."""

from __future__ import annotations

import importlib
import inspect
import warnings

import pytest
from policytest_support import assert_level_override, messages, res

from policies.tagging import AWS_UNTAGGED, AZURE_UNTAGGED, GCP_LABELS, label_path

TAGS = {"customer": "acme", "environment": "prod", "managed-by": "pulumi"}


def test_tagged_resources_pass() -> None:
    resources = [
        res("aws:s3/bucket:Bucket", "b", {"tags": TAGS}),
        res(
            "aws:eks/cluster:Cluster",
            "c",
            {
                "tags": {
                    "meterplane:customer": "acme",
                    "meterplane:environment": "prod",
                    "meterplane:managed-by": "pulumi",
                }
            },
        ),
        res("gcp:container/nodePool:NodePool", "p", {"nodeConfig": {"resourceLabels": TAGS}}),
        res("azure-native:storage:StorageAccount", "s", {"tags": TAGS}),
        res(
            "kubernetes:apps/v1:Deployment",
            "d",
            {
                "metadata": {
                    "labels": {
                        "meterplane.io/customer": "acme",
                        "meterplane.io/environment": "prod",
                        "app.kubernetes.io/managed-by": "pulumi",
                    }
                }
            },
        ),
        # Types that take no tags are not asked for them.
        res("aws:s3/bucketPolicy:BucketPolicy", "bp", {}),
        res("gcp:compute/network:Network", "n", {}),
        res("kubernetes:helm.sh/v3:Release", "r", {}),
        res("meterplane:aws:Cluster", "component", {}),
    ]
    assert messages("required-labels", resources) == []


def test_wrong_values_fail() -> None:
    found = messages(
        "required-labels",
        [
            res(
                "aws:s3/bucket:Bucket",
                "b",
                {"tags": {**TAGS, "environment": "dev", "managed-by": "terraform"}},
            )
        ],
    )
    assert found == [
        "Bucket b tags: environment=dev (expected prod); managed-by=terraform (expected pulumi)"
    ]


def test_missing_tags_fail() -> None:
    found = messages(
        "required-labels", [res("kubernetes:core/v1:Namespace", "ns", {"metadata": {}})]
    )
    assert len(found) == 1
    assert found[0].startswith("Namespace ns metadata.labels: no customer label")
    assert "no environment label" in found[0]
    assert "no managedBy label" in found[0]


def test_keys_option_and_level_override() -> None:
    bucket = res(
        "aws:s3/bucket:Bucket", "b", {"tags": {"Owner": "acme", "Env": "prod", "Tool": "pulumi"}}
    )
    assert messages("required-labels", [bucket]) != []
    keys = {"customer": ["Owner"], "environment": ["Env"], "managedBy": ["Tool"]}
    assert messages("required-labels", [bucket], {"keys": keys}) == []
    assert_level_override("required-labels", [res("aws:s3/bucket:Bucket", "b", {})])


def _sdk_class(token: str) -> type:
    package, module_path, name = token.split(":")
    root = {"aws": "pulumi_aws", "gcp": "pulumi_gcp", "azure-native": "pulumi_azure_native"}[
        package
    ]
    module = module_path.split("/")[0]
    with warnings.catch_warnings():
        # Importing an SDK module announces its deprecated functions; not our concern here.
        warnings.simplefilter("ignore", DeprecationWarning)
        loaded = importlib.import_module(f"{root}.{module}")
        return getattr(loaded, name)  # type: ignore[no-any-return]


@pytest.mark.slow
@pytest.mark.parametrize("token", sorted(AWS_UNTAGGED | AZURE_UNTAGGED | set(GCP_LABELS)))
def test_label_table_agrees_with_the_provider_sdks(token: str) -> None:
    # The table says which types take tags; the installed SDKs are the authority.
    parameters = inspect.signature(_sdk_class(token)._internal_init).parameters  # type: ignore[attr-defined]
    takes = bool({"tags", "labels", "resource_labels", "node_config"} & set(parameters))
    assert (label_path(res(token, "x", {})) is not None) == takes, f"{token} takes tags: {takes}"
