"""GCS against fake-gcs-server and Azure Blob against Azurite.

Neither emulator applies or reports encryption (fake-gcs-server ignores ``kmsKeyName``,
Azurite ignores ``x-ms-encryption-scope``), so these tests assert what can be observed: the
objects the peer stores and reads back, and, on the wire, that every upload the SDK sent
carried the customer's key. The manifests record that the store reported no key.
"""

from __future__ import annotations

import uuid
import warnings
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from azure.storage.blob import BlobServiceClient

from meterplane.archive.cold import cold_parts
from meterplane.archive.errors import StoreUnavailable
from meterplane.archive.exporter import Archiver
from meterplane.archive.stores import AzureStore, GcsStore, open_store, parse_archive_url
from meterplane.testing.objectstores import Azurite, FakeGcsServer
from tests.archive.support import Seeded, cold_rows, engine_of, hot_rows

RETENTION_DAYS = 7
GCS_KEY = "projects/acme-prod/locations/us-east1/keyRings/meterplane/cryptoKeys/archive"
AZURE_SCOPE = "meterplane-archive"


def _gcs_client(session: requests.Session) -> Any:
    with warnings.catch_warnings():
        # google.api_core's notices (future Python support, optional grpcio-status)
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", ImportWarning)
        from google.auth.credentials import AnonymousCredentials  # noqa: PLC0415 - see above
        from google.cloud import storage  # noqa: PLC0415 - imported under the filter
    return storage.Client(project="meterplane", credentials=AnonymousCredentials(), _http=session)


def test_gcs_objects_are_uploaded_with_the_cmek_key(
    seeded: Seeded, fake_gcs: FakeGcsServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in fake_gcs.env().items():
        monkeypatch.setenv(name, value)
    sent: list[requests.PreparedRequest] = []
    session = requests.Session()
    session.hooks["response"].append(lambda r, *_a, **_k: sent.append(r.request))
    client = _gcs_client(session)
    bucket = f"archive-{uuid.uuid4().hex[:12]}"
    client.create_bucket(bucket)

    store = open_store(f"gs://{bucket}/cold", GCS_KEY, client=client)
    assert isinstance(store, GcsStore)
    with engine_of(seeded.data_dir) as engine:
        before = hot_rows(engine)
        report = Archiver(engine, store, RETENTION_DAYS, clock=lambda: seeded.now).run()
        after = hot_rows(engine)

    uploads = [r for r in sent if r.method == "POST" and "/upload/" in (r.url or "")]
    assert len(uploads) == 2 * len(report.units) > 0
    for req in uploads:
        assert parse_qs(urlsplit(req.url).query)["kmsKeyName"] == [GCS_KEY], req.url
    names = sorted(b.name for b in client.list_blobs(bucket))
    assert names == sorted(f"cold/{k}" for k in store.list(""))
    assert len(names) == len(uploads)
    archived = [r for r in before if r not in after]
    assert len(archived) == report.rows
    assert cold_rows(store) == archived
    for part in cold_parts(store):
        assert part.manifest.encryption == {
            "scheme": "gcs-cmek",
            "requested": GCS_KEY,
            "reported": None,  # fake-gcs-server reports no key; real GCS reports the version
        }


def test_azure_blobs_are_uploaded_under_the_encryption_scope(
    seeded: Seeded, azurite: Azurite
) -> None:
    sent: list[tuple[str, str, dict[str, str]]] = []

    def record(request: Any) -> None:
        http = request.http_request
        sent.append((http.method, http.url, dict(http.headers)))

    client = BlobServiceClient.from_connection_string(
        azurite.connection_string, raw_request_hook=record
    )
    container = f"archive-{uuid.uuid4().hex[:12]}"
    client.create_container(container)

    store = open_store(f"az://{container}/cold", AZURE_SCOPE, client=client)
    assert isinstance(store, AzureStore)
    assert store.emulator
    with engine_of(seeded.data_dir) as engine:
        before = hot_rows(engine)
        report = Archiver(engine, store, RETENTION_DAYS, clock=lambda: seeded.now).run()
        after = hot_rows(engine)

    puts = [(u, h) for method, u, h in sent if method == "PUT" and f"{container}/cold/" in u]
    assert len(puts) == 2 * len(report.units) > 0
    for url, headers in puts:
        assert headers["x-ms-encryption-scope"] == AZURE_SCOPE, url
    blobs = sorted(b.name for b in client.get_container_client(container).list_blobs())
    assert blobs == sorted(f"cold/{k}" for k in store.list(""))
    assert len(blobs) == len(puts)
    archived = [r for r in before if r not in after]
    assert len(archived) == report.rows > 0
    assert cold_rows(store) == archived
    assert {p.manifest.encryption["requested"] for p in cold_parts(store)} == {AZURE_SCOPE}


def test_azure_missing_container_fails_and_drops_nothing(
    seeded: Seeded, azurite: Azurite, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in azurite.env().items():
        monkeypatch.setenv(name, value)  # the SDK's standard connection-string variable
    store = open_store("az://no-such-container/cold", AZURE_SCOPE)
    with engine_of(seeded.data_dir) as engine:
        before = hot_rows(engine)
        with pytest.raises(
            StoreUnavailable, match=r"az://no-such-container/cold: .*ContainerNotFound"
        ):
            Archiver(engine, store, RETENTION_DAYS, clock=lambda: seeded.now).run()
        assert hot_rows(engine) == before


def test_azure_account_cmk_from_the_deployed_abfss_url(
    seeded: Seeded, azurite: Azurite, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What the Azure stack passes: an abfss:// URL and the Key Vault key of the account's
    customer-managed encryption. Blobs then carry no scope of their own."""
    key_uri = "https://meterplane-kv.vault.azure.net/keys/archive/0123456789abcdef"
    sent: list[tuple[str, str, dict[str, str]]] = []

    def record(request: Any) -> None:
        http = request.http_request
        sent.append((http.method, http.url, dict(http.headers)))

    container = f"archive-{uuid.uuid4().hex[:12]}"
    client = BlobServiceClient.from_connection_string(
        azurite.connection_string, raw_request_hook=record
    )
    client.create_container(container)
    url = f"abfss://{container}@devstoreaccount1.dfs.core.windows.net/events"
    loc = parse_archive_url(url)
    assert (loc.scheme, loc.bucket, loc.prefix, loc.account) == (
        "az",
        container,
        "events/",
        "devstoreaccount1",
    )
    store = open_store(url, key_uri, client=client)
    with engine_of(seeded.data_dir) as engine:
        report = Archiver(engine, store, RETENTION_DAYS, clock=lambda: seeded.now).run()
    puts = [(u, h) for method, u, h in sent if method == "PUT" and f"{container}/events/" in u]
    assert len(puts) == 2 * len(report.units) > 0
    assert all("x-ms-encryption-scope" not in h for _, h in puts)
    assert {p.manifest.encryption["scheme"] for p in cold_parts(store)} == {"azure-account-cmk"}
    assert {p.manifest.encryption["requested"] for p in cold_parts(store)} == {key_uri}
    assert len(cold_rows(store)) == report.rows


def test_gcs_missing_bucket_fails_and_drops_nothing(
    seeded: Seeded, fake_gcs: FakeGcsServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in fake_gcs.env().items():
        monkeypatch.setenv(name, value)  # the SDK's standard emulator variable
    store = open_store("gs://no-such-bucket/cold", GCS_KEY)
    with engine_of(seeded.data_dir) as engine:
        before = hot_rows(engine)
        with pytest.raises(StoreUnavailable, match=r"gs://no-such-bucket/cold: list: 404"):
            Archiver(engine, store, RETENTION_DAYS, clock=lambda: seeded.now).run()
        assert hot_rows(engine) == before
