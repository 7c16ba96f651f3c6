"""S3 + KMS against moto's server: SSE-KMS with the customer's key on every object, and a
disabled key or an unreachable bucket fails the run loudly with every hot row kept."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from typing import Any

import boto3
import pytest

from meterplane.archive.errors import KeyUnusable, StoreUnavailable
from meterplane.archive.exporter import Archiver
from meterplane.archive.stores import open_store
from meterplane.testing.engines import free_port
from meterplane.testing.objectstores import MotoServer
from tests.archive.support import Seeded, cold_rows, engine_of, hot_rows

RETENTION_DAYS = 7


@pytest.fixture
def aws(moto_server: MotoServer, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """A fresh bucket and KMS key on moto, with the standard AWS variables pointing at it."""
    for name, value in moto_server.env().items():
        monkeypatch.setenv(name, value)
    bucket = f"archive-{uuid.uuid4().hex[:12]}"
    s3 = boto3.client("s3")
    kms = boto3.client("kms")
    s3.create_bucket(Bucket=bucket)
    key = kms.create_key(Description="customer key")["KeyMetadata"]
    return {"s3": s3, "kms": kms, "bucket": bucket, "key_id": key["KeyId"], "arn": key["Arn"]}


def _objects(s3: Any, bucket: str) -> list[str]:
    return [o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]


def test_every_object_is_sse_kms_with_the_customers_key(
    seeded: Seeded, aws: dict[str, Any]
) -> None:
    store = open_store(f"s3://{aws['bucket']}/meterplane/cold", aws["key_id"])
    with engine_of(seeded.data_dir) as engine:
        before = hot_rows(engine)
        report = Archiver(engine, store, RETENTION_DAYS, clock=lambda: seeded.now).run()
        after = hot_rows(engine)

    keys = _objects(aws["s3"], aws["bucket"])
    assert len(keys) == 2 * len(report.units) > 0  # a data object and a manifest per part
    for key in keys:
        assert key.startswith("meterplane/cold/events/day=")
        head = aws["s3"].head_object(Bucket=aws["bucket"], Key=key)
        assert head["ServerSideEncryption"] == "aws:kms", key
        assert head["SSEKMSKeyId"] == aws["key_id"], key
    archived = [r for r in before if r not in after]
    assert len(archived) == report.rows > 0
    assert cold_rows(store) == archived


def test_an_alias_of_the_key_is_accepted(aws: dict[str, Any]) -> None:
    aws["kms"].create_alias(AliasName="alias/meterplane-archive", TargetKeyId=aws["key_id"])
    store = open_store(f"s3://{aws['bucket']}", "alias/meterplane-archive")
    store.preflight()
    store.put("events/probe", b"x", "text/plain")
    head = aws["s3"].head_object(Bucket=aws["bucket"], Key="events/probe")
    assert head["ServerSideEncryption"] == "aws:kms"
    # S3 reports the key's ARN, moto the id as sent: both name the same customer key.
    assert store.encryption("events/probe")["reported"] in {
        "alias/meterplane-archive",
        aws["key_id"],
        aws["arn"],
    }


def test_an_object_under_another_key_fails_verification(aws: dict[str, Any]) -> None:
    other = aws["kms"].create_key(Description="not the customer's")["KeyMetadata"]["KeyId"]
    for name, extra in (
        ("events/other-key", {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": other}),
        ("events/s3-managed", {"ServerSideEncryption": "AES256"}),
    ):
        aws["s3"].put_object(Bucket=aws["bucket"], Key=name, Body=b"x", **extra)
        store = open_store(f"s3://{aws['bucket']}", aws["key_id"])
        with pytest.raises(KeyUnusable, match="not aws:kms key"):
            store.encryption(name)


def test_disabled_key_fails_loudly_and_drops_nothing(seeded: Seeded, aws: dict[str, Any]) -> None:
    aws["kms"].disable_key(KeyId=aws["key_id"])
    with engine_of(seeded.data_dir) as engine:
        before = hot_rows(engine)
    env = {
        **os.environ,
        "METERPLANE_ARCHIVE_URL": f"s3://{aws['bucket']}/cold",
        "METERPLANE_ARCHIVE_KMS_KEY": aws["key_id"],
        "METERPLANE_HOT_RETENTION_DAYS": str(RETENTION_DAYS),
    }
    done = subprocess.run(
        [sys.executable, "-m", "meterplane", "archive", "--data-dir", str(seeded.data_dir)],
        check=False,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert done.returncode == 1
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("meterplane archive: stopped, unverified days stay hot: s3://")
    assert aws["key_id"] in lines[0]
    assert "Disabled" in lines[0]
    assert done.stdout == ""
    with engine_of(seeded.data_dir) as engine:
        assert hot_rows(engine) == before
    assert _objects(aws["s3"], aws["bucket"]) == []


def test_key_disabled_mid_run_stops_before_delete(seeded: Seeded, aws: dict[str, Any]) -> None:
    store = open_store(f"s3://{aws['bucket']}", aws["key_id"])

    def disable_after_first_upload(step: str, _unit: object) -> None:
        if step == "uploaded":
            aws["kms"].disable_key(KeyId=aws["key_id"])

    with engine_of(seeded.data_dir) as engine:
        before = hot_rows(engine)
        archiver = Archiver(
            engine,
            store,
            RETENTION_DAYS,
            clock=lambda: seeded.now,
            fault=disable_after_first_upload,
        )
        # moto's S3 keeps serving the object under a disabled key (real S3 would refuse the
        # read); the archiver asks KMS again when it checks each object, before any delete.
        with pytest.raises(KeyUnusable, match="Disabled"):
            archiver.run()
        assert hot_rows(engine) == before


@pytest.mark.parametrize("where", ["missing bucket", "closed port"])
def test_unreachable_bucket_fails_and_drops_nothing(
    seeded: Seeded, aws: dict[str, Any], where: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    bucket = aws["bucket"]
    if where == "missing bucket":
        bucket = "no-such-bucket-here"
    else:
        monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")
    store = open_store(f"s3://{bucket}/cold", aws["key_id"])
    with engine_of(seeded.data_dir) as engine:
        before = hot_rows(engine)
        with pytest.raises(StoreUnavailable, match=f"s3://{bucket}/cold: HeadBucket"):
            Archiver(engine, store, RETENTION_DAYS, clock=lambda: seeded.now).run()
        assert hot_rows(engine) == before
