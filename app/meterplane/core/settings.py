"""Settings from ``METERPLANE_*`` environment variables (DESIGN.md 3.1); flags override.

A bad setting stops start-up with one line naming the setting and the reason.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from meterplane.core.errors import ConfigError

PREFIX = "METERPLANE_"


class Settings(BaseModel):
    """Every setting of the data plane, validated once at start-up."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    data_dir: Path = Path("./data")
    http_host: str = "127.0.0.1"
    http_port: Annotated[int, Field(ge=0, le=65535)] = 8080
    api_keys: tuple[str, ...] = ()
    catalog: Path | None = None
    kafka_bootstrap: str | None = None
    clickhouse_url: str | None = None
    control_plane_url: str | None = None
    control_plane_token: str | None = None
    # Sync agent (DESIGN.md section 6): environment id in rollup ids and URLs, the long-poll
    # wait (a pushed change is applied within it), rollup cadence (governance may override),
    # retry backoff bounds, and where standalone `sync` materializes the catalog.
    control_plane_environment: Annotated[str, Field(pattern=r"^[A-Za-z0-9._-]{1,128}$")] | None = (
        None
    )
    sync_poll_interval_s: Annotated[float, Field(gt=0, le=300)] = 25.0
    sync_rollup_interval_s: Annotated[float, Field(gt=0)] = 60.0
    sync_backoff_base_s: Annotated[float, Field(gt=0)] = 0.5
    sync_backoff_max_s: Annotated[float, Field(gt=0)] = 60.0
    sync_catalog_out: Path | None = None
    # At most 256 MiB: a body is held whole while it is validated, and a frame of the log
    # (one body), re-encoded for the raw store, must fit 32-bit Arrow offsets.
    max_body_bytes: Annotated[int, Field(ge=1024, le=256 * 1024 * 1024)] = 8 * 1024 * 1024
    max_backlog_bytes: Annotated[int, Field(ge=1024 * 1024)] = 512 * 1024 * 1024
    dedup_window_s: Annotated[float, Field(gt=0)] = 86_400.0
    lateness_days: Annotated[float, Field(gt=0, le=3650)] = 35.0
    checkpoint_interval_s: Annotated[float, Field(gt=0)] = 1.0
    archive_url: str | None = None
    archive_kms_key: str | None = None
    hot_retention_days: Annotated[float, Field(gt=0)] = 30.0
    archive_interval_s: Annotated[float, Field(gt=0)] = 3600.0  # serve runs the archiver this often
    log_level: str = "INFO"

    @field_validator("api_keys", mode="before")
    @classmethod
    def _split_keys(cls, v: object) -> object:
        if isinstance(v, str):
            return tuple(k.strip() for k in v.split(",") if k.strip())
        return v

    @field_validator("api_keys")
    @classmethod
    def _key_length(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        for k in v:
            if len(k) < 16:
                raise ValueError("each API key needs at least 16 characters")
        return v

    def require_api_keys(self) -> None:
        """Outside ``demo`` an API key is mandatory."""
        if not self.api_keys:
            raise ConfigError("METERPLANE_API_KEYS: required (comma-separated, 16+ chars each)")


def environment_help() -> str:
    """Every setting's variable and default, for a command's ``--help`` (from the model, so
    it cannot drift from what is read)."""
    lines = ["environment (flags override):"]
    for name, field in Settings.model_fields.items():
        default = field.default
        if name == "api_keys":
            shown = "required: comma-separated, 16+ characters each"
        elif name == "catalog":
            shown = "unset: the bundled sample catalog"
        elif default is None:
            shown = "unset"
        elif isinstance(default, float) and default.is_integer():
            shown = f"default {int(default)}"
        else:
            shown = f"default {default}"
        lines.append(f"  {PREFIX + name.upper():<40} {shown}")
    return "\n".join(lines)


def load_settings(env: Mapping[str, str] | None = None, **overrides: object) -> Settings:
    """Settings from the environment, with non-None ``overrides`` (from flags) on top."""
    env = os.environ if env is None else env
    values: dict[str, object] = {}
    for name in Settings.model_fields:
        raw = env.get(PREFIX + name.upper())
        if raw is not None and raw != "":
            values[name] = raw
    values.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return Settings.model_validate(values)
    except ValidationError as err:
        e = err.errors()[0]
        name = str(e["loc"][0]) if e["loc"] else "?"
        where = PREFIX + name.upper() if name in Settings.model_fields else name
        raise ConfigError(f"{where}: {e['msg']}") from None
