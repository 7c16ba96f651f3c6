"""What the archive looks like in the bucket: object keys, the Parquet schema, manifests.

One unit of archiving is one UTC day (or a hash shard of a very large day). It becomes two
objects under the archive prefix::

    events/day=2026-10-01/part-<digest>.parquet        the rows, zstd-compressed Parquet
    events/day=2026-10-01/part-<digest>.manifest.json  rows, bytes, SHA-256, key, ...

``<digest>`` is the start of the SHA-256 of the Parquet bytes, so a rerun that exports
the same rows writes the same key (an interrupted run leaves nothing new behind). The
manifest is written after the data and is what makes a part count: a data object without
its manifest is an interrupted upload whose rows are still hot, and readers ignore it.
The ``day=`` directories are Hive-style, so Athena, BigQuery or ClickHouse's ``s3()``
table function can query the archive directly.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
from dataclasses import asdict, dataclass
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from meterplane.archive.errors import ColdCorrupt

FORMAT_VERSION = 1
TABLE_DIR = "events"
PARQUET_SUFFIX = ".parquet"
MANIFEST_SUFFIX = ".manifest.json"

# The columns of the ``events`` table (migration 0001), as the hot store returns them.
EVENTS_SCHEMA = pa.schema(
    [
        pa.field("customer_id", pa.string(), nullable=False),
        pa.field("idempotency_key", pa.string(), nullable=False),
        pa.field("kind", pa.string(), nullable=False),
        pa.field("name", pa.string(), nullable=False),
        pa.field("timestamp", pa.timestamp("us", tz="UTC"), nullable=False),
        pa.field("ingested_at", pa.timestamp("us", tz="UTC"), nullable=False),
        pa.field("resource_id", pa.string(), nullable=False),
        pa.field("payload", pa.string(), nullable=False),
        pa.field("log_pos", pa.uint64(), nullable=False),
    ]
)
EVENT_COLUMN_NAMES = tuple(EVENTS_SCHEMA.names)


def day_dir(day: dt.date) -> str:
    """The directory (relative to the archive prefix) holding a day's parts."""
    return f"{TABLE_DIR}/day={day.isoformat()}/"


def part_keys(day: dt.date, sha256: str) -> tuple[str, str]:
    """(data key, manifest key) of the part whose Parquet bytes hash to ``sha256``."""
    stem = f"{day_dir(day)}part-{sha256[:24]}"
    return stem + PARQUET_SUFFIX, stem + MANIFEST_SUFFIX


def day_of_key(key: str) -> dt.date | None:
    """The day a key belongs to, or None for keys outside the layout."""
    prefix = f"{TABLE_DIR}/day="
    if not key.startswith(prefix):
        return None
    rest = key[len(prefix) :]
    try:
        return dt.date.fromisoformat(rest.split("/", 1)[0])
    except ValueError:
        return None


def to_parquet(table: pa.Table) -> bytes:
    """Rows as zstd Parquet bytes; deterministic for the same rows in the same order."""
    sink = io.BytesIO()
    pq.write_table(
        table.cast(EVENTS_SCHEMA),
        sink,
        compression="zstd",
        # Row groups of 128k rows keep a reader's memory bounded on large days.
        row_group_size=128 * 1024,
        use_dictionary=["kind", "name", "customer_id", "resource_id"],
        write_statistics=True,
    )
    return sink.getvalue()


def read_parquet(data: bytes) -> pq.ParquetFile:
    """Open Parquet bytes for reading."""
    return pq.ParquetFile(pa.BufferReader(data))


def sha256_hex(data: bytes) -> str:
    """SHA-256 of ``data`` as lowercase hex."""
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class Manifest:
    """What the archiver wrote for one part; re-read from the store to verify it."""

    day: str
    object: str
    rows: int
    size: int
    sha256: str
    min_log_pos: int
    max_log_pos: int
    encryption: dict[str, str | None]
    created_at: str
    format: int = FORMAT_VERSION
    columns: tuple[str, ...] = EVENT_COLUMN_NAMES

    def encode(self) -> bytes:
        """Canonical JSON bytes."""
        body = asdict(self)
        body["columns"] = list(self.columns)
        return json.dumps(body, sort_keys=True, indent=1).encode()

    @classmethod
    def decode(cls, data: bytes, where: str) -> Manifest:
        """Parse a manifest; ``where`` names the object in errors."""
        try:
            body: dict[str, Any] = json.loads(data)
            body["columns"] = tuple(body["columns"])
            manifest = cls(**body)
        except (ValueError, TypeError, KeyError) as err:
            raise ColdCorrupt(f"{where}: not a readable manifest ({err})") from None
        if manifest.format != FORMAT_VERSION:
            raise ColdCorrupt(f"{where}: manifest format {manifest.format} is not supported")
        return manifest
