"""Object stores for the cold tier: S3 (SSE-KMS), GCS (CMEK), Azure Blob (encryption
scope, or the account's customer-managed key) and local files, behind one small interface.

Every adapter writes each object under the customer's key *per request* (not relying on
the bucket default alone), and can say which key the store reports for an object, so the
archiver verifies encryption as well as content before it deletes anything hot. Each
cloud SDK is configured the way it always is (``AWS_ENDPOINT_URL``, ``AWS_REGION``,
``STORAGE_EMULATOR_HOST``, ``AZURE_STORAGE_CONNECTION_STRING``, workload identity, ...);
this module adds no settings of its own beyond the URL and the key.

Emulators: moto reports SSE-KMS exactly like S3. fake-gcs-server and Azurite accept the
key on upload but never report one back, so against them (``STORAGE_EMULATOR_HOST`` set,
or Azurite's well-known ``devstoreaccount1`` account) an object without a reported key is
accepted and recorded as ``reported: null`` in its manifest; against the real services a
missing or different key fails verification.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar
from urllib.parse import urlsplit

from meterplane.archive.errors import KeyUnusable, StoreUnavailable
from meterplane.core.errors import ConfigError
from meterplane.core.files import write_atomic
from meterplane.core.settings import Settings

T = TypeVar("T")
PARQUET_TYPE = "application/vnd.apache.parquet"
JSON_TYPE = "application/json"


class ObjectStore(Protocol):
    """What the archiver and the cold reader need from a bucket (keys are relative to
    the archive prefix)."""

    @property
    def url(self) -> str:
        """The archive location, for messages (never includes credentials)."""

    def preflight(self) -> None:
        """Check that the bucket is reachable and the key usable, before any export."""

    def put(self, key: str, data: bytes, content_type: str) -> None:
        """Write one object, encrypted under the configured key; overwrites."""

    def get(self, key: str) -> bytes:
        """Read one object back."""

    def list(self, prefix: str) -> list[str]:
        """Keys under ``prefix``, sorted."""

    def encryption(self, key: str) -> dict[str, str | None]:
        """How the store says ``key`` is encrypted: ``scheme``, ``requested``, ``reported``.
        Raises ``KeyUnusable`` if that is not the configured key."""


# --------------------------------------------------------------------------- local files


class FileStore:
    """A local directory (embedded mode, tests). No server-side encryption: the disk's."""

    def __init__(self, root: Path) -> None:
        self.root = root

    @property
    def url(self) -> str:
        return f"file://{self.root}"

    def preflight(self) -> None:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise StoreUnavailable(f"{self.url}: {err.strerror}") from None
        if not os.access(self.root, os.W_OK):
            raise StoreUnavailable(f"{self.url}: not writable")

    def put(self, key: str, data: bytes, content_type: str) -> None:
        path = self.root / key
        try:
            # A crash leaves the old object or the new one, never a torn file under the key.
            write_atomic(path, data)
        except OSError as err:
            raise StoreUnavailable(f"{self.url}/{key}: {err.strerror}") from None

    def get(self, key: str) -> bytes:
        try:
            return (self.root / key).read_bytes()
        except OSError as err:
            raise StoreUnavailable(f"{self.url}/{key}: {err.strerror}") from None

    def list(self, prefix: str) -> list[str]:
        base = self.root / prefix
        if not base.exists():
            return []
        return sorted(
            p.relative_to(self.root).as_posix()
            for p in base.rglob("*")
            if p.is_file() and not p.name.endswith(".tmp")
        )

    def encryption(self, key: str) -> dict[str, str | None]:
        return {"scheme": "none", "requested": None, "reported": None}


# --------------------------------------------------------------------------- S3


_KMS_ERROR_CODES = frozenset(
    {
        "KMS.DisabledException",
        "KMS.NotFoundException",
        "KMS.KMSInvalidStateException",
        "KMS.AccessDeniedException",
        "KMS.InvalidKeyUsageException",
        "DisabledException",
        "NotFoundException",
        "KMSInvalidStateException",
        "KMS.UnrecognizedClientException",
    }
)


class S3Store:
    """An S3 bucket (or anything S3-compatible that does SSE-KMS); SSE-KMS per object."""

    def __init__(
        self, bucket: str, prefix: str, kms_key: str, client: Any = None, kms: Any = None
    ) -> None:
        self.bucket = bucket
        self.prefix = prefix
        self.kms_key = kms_key
        if client is None or kms is None:
            import boto3  # noqa: PLC0415 - cloud SDKs load only for the cloud in use
            from botocore.config import Config  # noqa: PLC0415

            # Bounded retries: an unreachable endpoint must fail the run within seconds,
            # not hang the scheduler; the next scheduled run retries anyway.
            config = Config(
                retries={"max_attempts": 3, "mode": "standard"},
                connect_timeout=5,
                read_timeout=60,
            )
            client = client or boto3.client("s3", config=config)
            kms = kms or boto3.client("kms", config=config)
        self._s3 = client
        self._kms = kms
        self._key_ids: set[str] | None = None

    @property
    def url(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}".rstrip("/")

    def _call(self, what: str, fn: Callable[[], T]) -> T:
        from botocore.exceptions import BotoCoreError, ClientError  # noqa: PLC0415

        try:
            return fn()
        except ClientError as err:
            error = err.response.get("Error", {})
            code = str(error.get("Code", "?"))
            message = str(error.get("Message", "")) or code
            if code in _KMS_ERROR_CODES or code.startswith("KMS"):
                raise KeyUnusable(f"{self.url}: {what}: key {self.kms_key}: {message}") from None
            raise StoreUnavailable(f"{self.url}: {what}: {code}: {message}") from None
        except BotoCoreError as err:
            raise StoreUnavailable(f"{self.url}: {what}: {err}") from None

    def _accepted_key_ids(self) -> set[str]:
        if self._key_ids is None:
            meta = self._call("DescribeKey", lambda: self._kms.describe_key(KeyId=self.kms_key))[
                "KeyMetadata"
            ]
            state = meta.get("KeyState", "Enabled" if meta.get("Enabled") else "Disabled")
            if state != "Enabled" or not meta.get("Enabled", True):
                raise KeyUnusable(
                    f"{self.url}: key {self.kms_key} is {state}: nothing can be archived "
                    "under it (enable the key, or set METERPLANE_ARCHIVE_KMS_KEY)"
                )
            self._key_ids = {self.kms_key, meta["KeyId"], meta["Arn"]}
        return self._key_ids

    def preflight(self) -> None:
        self._call("HeadBucket", lambda: self._s3.head_bucket(Bucket=self.bucket))
        # S3 itself refuses a disabled key on PutObject; asking KMS first fails the run
        # before any export, and also covers S3-compatible stores that do not check.
        self._key_ids = None
        self._accepted_key_ids()

    def put(self, key: str, data: bytes, content_type: str) -> None:
        self._call(
            f"PutObject {key}",
            lambda: self._s3.put_object(
                Bucket=self.bucket,
                Key=self.prefix + key,
                Body=data,
                ContentType=content_type,
                ServerSideEncryption="aws:kms",
                SSEKMSKeyId=self.kms_key,
            ),
        )

    def get(self, key: str) -> bytes:
        body = self._call(
            f"GetObject {key}",
            lambda: self._s3.get_object(Bucket=self.bucket, Key=self.prefix + key)["Body"],
        )
        return self._call(f"GetObject {key}", body.read)  # type: ignore[no-any-return]

    def list(self, prefix: str) -> list[str]:
        def pages() -> list[str]:
            out: list[str] = []
            paginator = self._s3.get_paginator("list_objects_v2")
            for page in paginator.paginate(Bucket=self.bucket, Prefix=self.prefix + prefix):
                out.extend(o["Key"][len(self.prefix) :] for o in page.get("Contents", []))
            return sorted(out)

        return self._call("ListObjectsV2", pages)

    def encryption(self, key: str) -> dict[str, str | None]:
        # Ask KMS again for every object: a key disabled since the preflight must stop the
        # run before its rows are deleted, even where the store would still serve them.
        self._key_ids = None
        head = self._call(
            f"HeadObject {key}",
            lambda: self._s3.head_object(Bucket=self.bucket, Key=self.prefix + key),
        )
        scheme = head.get("ServerSideEncryption")
        reported = head.get("SSEKMSKeyId")
        if scheme != "aws:kms" or reported not in self._accepted_key_ids():
            raise KeyUnusable(
                f"{self.url}/{key}: stored with {scheme} key {reported}, "
                f"not aws:kms key {self.kms_key}"
            )
        return {"scheme": "aws:kms", "requested": self.kms_key, "reported": reported}


# --------------------------------------------------------------------------- GCS


@contextlib.contextmanager
def _quiet_google_import() -> Iterator[None]:
    # google.api_core warns at import about future Python support and a missing optional
    # grpcio-status; neither is ours to act on, and pytest runs with warnings as errors.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", ImportWarning)
        yield


class GcsStore:
    """A GCS bucket; each object written with ``kmsKeyName`` (CMEK)."""

    def __init__(self, bucket: str, prefix: str, kms_key: str, client: Any = None) -> None:
        self.bucket_name = bucket
        self.prefix = prefix
        self.kms_key = kms_key
        self.emulator = bool(os.environ.get("STORAGE_EMULATOR_HOST"))
        with _quiet_google_import():
            from google.api_core import exceptions, retry  # noqa: PLC0415
            from google.cloud import storage  # noqa: PLC0415

        self._errors: Any = exceptions
        self._storage: Any = storage
        # Bounded like the S3 client: fail the run, let the next one retry.
        self._retry: Any = retry.Retry(timeout=30)
        self._given_client = client

    @functools.cached_property
    def _client(self) -> Any:
        # Built on first use: without credentials the constructor itself fails, and that
        # must fail an archive run (StoreUnavailable), not ``serve``'s start-up.
        if self._given_client is not None:
            return self._given_client
        from google.auth.exceptions import GoogleAuthError  # noqa: PLC0415

        try:
            if self.emulator:
                from google.auth.credentials import AnonymousCredentials  # noqa: PLC0415

                return self._storage.Client(
                    project=os.environ.get("GOOGLE_CLOUD_PROJECT", "meterplane"),
                    credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
                )
            return self._storage.Client()
        except GoogleAuthError as err:
            raise StoreUnavailable(f"{self.url}: credentials: {err}") from None

    @property
    def _bucket(self) -> Any:
        return self._client.bucket(self.bucket_name)

    @property
    def url(self) -> str:
        return f"gs://{self.bucket_name}/{self.prefix}".rstrip("/")

    def _call(self, what: str, fn: Callable[[], T]) -> T:
        import requests  # noqa: PLC0415 - the transport google-cloud-storage uses

        try:
            return fn()
        except self._errors.GoogleAPICallError as err:
            message = str(getattr(err, "message", err)).splitlines()[0]
            if "kms" in message.lower() or "key" in message.lower().split():
                raise KeyUnusable(f"{self.url}: {what}: key {self.kms_key}: {message}") from None
            raise StoreUnavailable(f"{self.url}: {what}: {err.code}: {message}") from None
        except (requests.RequestException, self._errors.RetryError) as err:
            raise StoreUnavailable(f"{self.url}: {what}: {err}") from None

    def preflight(self) -> None:
        # Listing needs only storage.objects.list (roles/storage.objectAdmin, which is all
        # the archiver is granted; getting the bucket would need storage.buckets.get).
        # Data-plane credentials cannot ask Cloud KMS about the key; GCS itself refuses an
        # upload under a disabled or inaccessible key, which fails the run before delete.
        self._call(
            "list",
            lambda: list(
                self._client.list_blobs(
                    self.bucket_name, prefix=self.prefix, max_results=1, retry=self._retry
                )
            ),
        )

    def put(self, key: str, data: bytes, content_type: str) -> None:
        blob = self._bucket.blob(self.prefix + key, kms_key_name=self.kms_key)
        self._call(
            f"upload {key}",
            lambda: blob.upload_from_string(data, content_type=content_type, retry=self._retry),
        )

    def get(self, key: str) -> bytes:
        blob = self._bucket.blob(self.prefix + key)
        return self._call(  # type: ignore[no-any-return]
            f"download {key}", lambda: blob.download_as_bytes(retry=self._retry)
        )

    def list(self, prefix: str) -> list[str]:
        def names() -> list[str]:
            blobs = self._client.list_blobs(
                self.bucket_name, prefix=self.prefix + prefix, retry=self._retry
            )
            return sorted(b.name[len(self.prefix) :] for b in blobs)

        return self._call("list", names)

    def encryption(self, key: str) -> dict[str, str | None]:
        blob = self._call(
            f"get {key}", lambda: self._bucket.get_blob(self.prefix + key, retry=self._retry)
        )
        if blob is None:
            raise StoreUnavailable(f"{self.url}/{key}: object vanished after upload")
        reported = blob.kms_key_name
        # GCS reports the key version that encrypted the object: <key>/cryptoKeyVersions/N.
        ok = reported is not None and (
            reported == self.kms_key or reported.startswith(self.kms_key + "/cryptoKeyVersions/")
        )
        if not ok and not (reported is None and self.emulator):
            raise KeyUnusable(
                f"{self.url}/{key}: stored under key {reported}, not CMEK key {self.kms_key}"
            )
        return {"scheme": "gcs-cmek", "requested": self.kms_key, "reported": reported}


# --------------------------------------------------------------------------- Azure Blob

AZURITE_ACCOUNT = "devstoreaccount1"


def is_key_vault_key(value: str) -> bool:
    """Whether ``value`` is a Key Vault (or Managed HSM) key URI rather than a scope name."""
    host = urlsplit(value).hostname or ""
    return value.startswith("https://") and (
        host.endswith(".vault.azure.net") or host.endswith(".managedhsm.azure.net")
    )


class AzureStore:
    """An Azure Blob container under the customer's key, in one of two ways:

    - an encryption scope name: each blob is written with ``x-ms-encryption-scope`` (the
      scope is bound to the customer's Key Vault key) and must report that scope back;
    - a Key Vault key URI: the storage account's default encryption is the customer-managed
      key (what the Azure components configure). The data plane cannot see which key an
      account uses, so each blob is checked to be server-encrypted under the account
      default (no other scope); the key itself is enforced by the account's configuration.
    """

    def __init__(
        self,
        container: str,
        prefix: str,
        key: str,
        client: Any = None,
        account: str | None = None,
    ) -> None:
        self.container = container
        self.prefix = prefix
        self.key = key
        self.scope = None if is_key_vault_key(key) else key
        if client is None:
            client = _azure_client(account)
        self._service = client
        self._container = client.get_container_client(container)
        self.emulator = client.account_name == AZURITE_ACCOUNT
        from azure.core import exceptions  # noqa: PLC0415

        self._errors: Any = exceptions

    @property
    def url(self) -> str:
        return f"az://{self.container}/{self.prefix}".rstrip("/")

    def _call(self, what: str, fn: Callable[[], T]) -> T:
        try:
            return fn()
        except self._errors.HttpResponseError as err:
            code = str(getattr(err, "error_code", None) or err.status_code)
            message = str(err.message or err).splitlines()[0]
            if "encryptionscope" in code.lower() or "key" in code.lower():
                raise KeyUnusable(f"{self.url}: {what}: key {self.key}: {code}") from None
            raise StoreUnavailable(f"{self.url}: {what}: {code}: {message}") from None
        except (self._errors.AzureError, ValueError) as err:
            raise StoreUnavailable(f"{self.url}: {what}: {err}".splitlines()[0]) from None

    def preflight(self) -> None:
        self._call("get container properties", self._container.get_container_properties)

    def put(self, key: str, data: bytes, content_type: str) -> None:
        from azure.storage.blob import ContentSettings  # noqa: PLC0415

        scope = {} if self.scope is None else {"encryption_scope": self.scope}
        self._call(
            f"upload {key}",
            lambda: self._container.upload_blob(
                self.prefix + key,
                data,
                overwrite=True,
                content_settings=ContentSettings(content_type=content_type),
                **scope,
            ),
        )

    def get(self, key: str) -> bytes:
        return self._call(  # type: ignore[no-any-return]
            f"download {key}", lambda: self._container.download_blob(self.prefix + key).readall()
        )

    def list(self, prefix: str) -> list[str]:
        def names() -> list[str]:
            blobs = self._container.list_blobs(name_starts_with=self.prefix + prefix)
            return sorted(b.name[len(self.prefix) :] for b in blobs)

        return self._call("list", names)

    def encryption(self, key: str) -> dict[str, str | None]:
        props = self._call(
            f"get properties {key}",
            lambda: self._container.get_blob_client(self.prefix + key).get_blob_properties(),
        )
        reported = props.encryption_scope
        if self.scope is None:
            ok = props.server_encrypted and reported in (None, "$account-encryption-key")
            if not ok:
                raise KeyUnusable(
                    f"{self.url}/{key}: stored under encryption scope {reported}, not the "
                    f"account's customer-managed key {self.key}"
                )
            return {"scheme": "azure-account-cmk", "requested": self.key, "reported": reported}
        ok = reported == self.scope and props.server_encrypted
        if not ok and not (reported is None and self.emulator):
            raise KeyUnusable(
                f"{self.url}/{key}: stored under encryption scope {reported}, not {self.scope}"
            )
        return {"scheme": "azure-encryption-scope", "requested": self.scope, "reported": reported}


def _azure_client(account: str | None) -> Any:
    from azure.storage.blob import BlobServiceClient  # noqa: PLC0415

    # Bounded retries, as for the other clouds.
    options: dict[str, Any] = {"retry_total": 3, "connection_timeout": 5, "read_timeout": 60}
    conn = os.environ.get("AZURE_STORAGE_CONNECTION_STRING")
    if conn:
        return BlobServiceClient.from_connection_string(conn, **options)
    account_url = os.environ.get("AZURE_STORAGE_ACCOUNT_URL")
    account = account or os.environ.get("AZURE_STORAGE_ACCOUNT")
    if not account_url and account:
        account_url = f"https://{account}.blob.core.windows.net"
    if not account_url:
        raise ConfigError(
            "METERPLANE_ARCHIVE_URL: az://container needs the account: use "
            "abfss://container@ACCOUNT.dfs.core.windows.net, or set AZURE_STORAGE_ACCOUNT, "
            "AZURE_STORAGE_ACCOUNT_URL or AZURE_STORAGE_CONNECTION_STRING"
        )
    from azure.identity import DefaultAzureCredential  # noqa: PLC0415

    # Workload identity in AKS; any other DefaultAzureCredential source elsewhere.
    return BlobServiceClient(account_url, credential=DefaultAzureCredential(), **options)


def quiet_sdk_loggers() -> None:
    """Keep the cloud SDKs' INFO chatter (credential and endpoint discovery on every
    client) out of the service log; their warnings and errors still show."""
    for name in ("botocore", "boto3", "urllib3", "azure", "google"):
        logging.getLogger(name).setLevel(logging.WARNING)


# --------------------------------------------------------------------------- factory


@dataclass(frozen=True)
class ArchiveLocation:
    """A parsed ``METERPLANE_ARCHIVE_URL``."""

    scheme: str
    bucket: str
    prefix: str  # "" or ending in "/"
    account: str | None = None  # Azure storage account, when the URL names it


def parse_archive_url(url: str) -> ArchiveLocation:
    """Split ``s3://bucket/prefix`` (also ``gs://``, ``az://container/prefix``,
    ``file:///path``) into its parts; a bad URL is a ``ConfigError``."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme == "file":
        path = (parts.netloc + parts.path).rstrip("/")
        if not path:
            raise ConfigError(f"METERPLANE_ARCHIVE_URL: {url!r} has no path")
        return ArchiveLocation("file", path, "")
    if scheme not in ("s3", "gs", "az", "abfss", "abfs"):
        raise ConfigError(
            f"METERPLANE_ARCHIVE_URL: {url!r}: scheme must be s3://, gs://, az://, abfss:// "
            "or file://"
        )
    if not parts.netloc:
        raise ConfigError(f"METERPLANE_ARCHIVE_URL: {url!r} names no bucket")
    prefix = parts.path.strip("/")
    prefix = prefix + "/" if prefix else ""
    if scheme in ("abfss", "abfs"):
        # abfss://container@account.dfs.core.windows.net/path (ADLS Gen2 / Blob)
        container, at, host = parts.netloc.partition("@")
        if not at or not container or not host:
            raise ConfigError(
                f"METERPLANE_ARCHIVE_URL: {url!r}: expected abfss://container@account.dfs...."
            )
        return ArchiveLocation("az", container, prefix, account=host.split(".", 1)[0])
    return ArchiveLocation(scheme, parts.netloc, prefix)


def open_store(url: str, kms_key: str | None, client: Any = None) -> ObjectStore:
    """The store for an archive URL and key. Cloud buckets require the customer's key:
    archiving raw events under anything else is refused, not defaulted."""
    loc = parse_archive_url(url)
    if loc.scheme == "file":
        if kms_key:
            raise ConfigError(
                "METERPLANE_ARCHIVE_KMS_KEY: file:// archives are not server-side encrypted; "
                "unset the key or archive to s3://, gs:// or az://"
            )
        return FileStore(Path(loc.bucket))
    if not kms_key:
        raise ConfigError(
            f"METERPLANE_ARCHIVE_KMS_KEY: required for {loc.scheme}:// archives "
            "(S3: KMS key ARN/id/alias; GCS: CryptoKey resource name; Azure: encryption scope "
            "or Key Vault key URI)"
        )
    if loc.scheme == "s3":
        return S3Store(loc.bucket, loc.prefix, kms_key, client=client)
    if loc.scheme == "gs":
        return GcsStore(loc.bucket, loc.prefix, kms_key, client=client)
    return AzureStore(loc.bucket, loc.prefix, kms_key, client=client, account=loc.account)


def default_archive_url(data_dir: Path) -> str:
    """Where embedded mode archives when ``METERPLANE_ARCHIVE_URL`` is unset."""
    return f"file://{data_dir.resolve() / 'cold'}"


def store_from_settings(settings: Settings, client: Any = None) -> ObjectStore:
    """The archive store the settings name (default: ``cold/`` in the data directory)."""
    url = settings.archive_url or default_archive_url(settings.data_dir)
    return open_store(url, settings.archive_kms_key, client=client)
