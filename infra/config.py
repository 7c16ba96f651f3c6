"""The stack's configuration: the only place that reads Pulumi config.

Every key lives in the ``meterplane`` namespace of ``stacks/Pulumi.<stack>.yaml``. The raw
values are validated once, here, by a frozen pydantic model that forbids unknown keys, so
an invalid stack stops before any resource is declared with an error that names the key
path (``meterplane:archive.retentionDays``) and the reason.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from ipaddress import IPv4Network
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, HttpUrl, ValidationError, model_validator

from meterplane import __version__
from meterplane.core.errors import field_path

NAMESPACE = "meterplane"

Slug = Annotated[str, Field(pattern=r"^[a-z][a-z0-9-]{1,30}[a-z0-9]$")]


class StackConfigError(ValueError):
    """The stack configuration is invalid; ``problems`` holds (key path, reason) pairs."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        self.problems = problems
        super().__init__("; ".join(f"{path}: {reason}" for path, reason in problems))


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=False)


class ArchiveConfig(_Model):
    """Hot and cold retention of raw events, and an optional existing customer key."""

    hot_retention_days: int = Field(alias="hotRetentionDays", ge=1, le=400)
    retention_days: int = Field(alias="retentionDays", ge=1, le=3650)
    # An existing customer-managed key (AWS key ARN, GCP crypto key id, Azure key URL).
    # Absent: the stack creates a key with rotation on.
    kms_key_id: str | None = Field(default=None, alias="kmsKeyId", min_length=1)

    @model_validator(mode="after")
    def _cold_outlives_hot(self) -> ArchiveConfig:
        if self.retention_days < self.hot_retention_days:
            raise ValueError("retentionDays: must be at least hotRetentionDays")
        return self


class ControlPlaneConfig(_Model):
    """The vendor's control plane: the only destination the sync agent may reach."""

    endpoint: HttpUrl
    environment_id: str = Field(alias="environmentId", min_length=1, max_length=128)
    # NetworkPolicy cannot name hosts: the control plane's published egress ranges.
    egress_cidrs: tuple[IPv4Network, ...] = Field(alias="egressCidrs", min_length=1)

    @model_validator(mode="after")
    def _https_only(self) -> ControlPlaneConfig:
        if self.endpoint.scheme != "https":
            raise ValueError("endpoint: must use https")
        return self


class ReleaseConfig(_Model):
    """The release every image of the stack is pinned to, and its rollout ring."""

    version: str = Field(
        default=__version__, pattern=r"^[0-9]+\.[0-9]+\.[0-9]+([-+][0-9A-Za-z.-]+)?$"
    )
    ring: Literal["canary", "early", "general"] = "general"


class FeaturesConfig(_Model):
    """Optional parts of the product; metering itself is always on."""

    entitlements: bool = True
    local_customer_data: bool = Field(default=True, alias="localCustomerData")


class NetworkConfig(_Model):
    """Address plan of the data plane's private network."""

    cidr: IPv4Network = IPv4Network("10.40.0.0/16")

    @model_validator(mode="after")
    def _room_for_subnets(self) -> NetworkConfig:
        if self.cidr.prefixlen > 16:
            raise ValueError("cidr: must be a /16 or larger (pods and services get ranges)")
        return self


class GcpConfig(_Model):
    """GCP project that hosts the data plane."""

    project: str = Field(pattern=r"^[a-z][a-z0-9-]{4,28}[a-z0-9]$")


# Microsoft's published ranges for login.microsoftonline.com (service tag
# AzureActiveDirectory): workload identity exchanges its token there.
ENTRA_ID_CIDRS = (IPv4Network("20.190.128.0/18"), IPv4Network("40.126.0.0/18"))


class AzureConfig(_Model):
    """Azure placement (the subscription comes from the provider's credentials)."""

    resource_group_prefix: str = Field(default="meterplane", alias="resourceGroupPrefix")
    # Override if Microsoft changes the AzureActiveDirectory ranges.
    identity_egress_cidrs: tuple[IPv4Network, ...] = Field(
        default=ENTRA_ID_CIDRS, alias="identityEgressCidrs", min_length=1
    )


class StackConfig(_Model):
    """One customer environment, validated (DESIGN.md 3.4)."""

    customer: Slug
    environment: Literal["prod", "staging", "dev"]
    cloud: Literal["aws", "gcp", "azure"]
    region: str = Field(pattern=r"^[a-z0-9-]{3,40}$")
    zones: int = Field(ge=1, le=3)
    throughput: int = Field(ge=1, le=5_000_000, description="peak events per second")
    archive: ArchiveConfig
    control_plane: ControlPlaneConfig = Field(alias="controlPlane")
    release: ReleaseConfig = ReleaseConfig()
    features: FeaturesConfig = FeaturesConfig()
    network: NetworkConfig = NetworkConfig()
    gcp: GcpConfig | None = None
    azure: AzureConfig | None = None

    @model_validator(mode="after")
    def _consistent(self) -> StackConfig:
        if self.environment == "prod" and self.zones < 3:
            raise ValueError("zones: prod stacks must span at least 3 zones")
        if self.features.entitlements and not self.features.local_customer_data:
            # Decisions read the customer's subscriptions, which live only in local data.
            raise ValueError("features.entitlements: needs features.localCustomerData")
        if self.cloud == "azure" and self.archive.kms_key_id is not None:
            # AKS KMS and the storage CMK need the vault's resource id and role grants on
            # it; a bare key URL cannot provide them, so the vault is always created.
            raise ValueError(
                "archive.kmsKeyId: not supported on azure (the stack creates its vault)"
            )
        if self.cloud == "gcp" and self.gcp is None:
            raise ValueError("gcp: required when cloud is gcp")
        other = {"aws": ("gcp", "azure"), "gcp": ("azure",), "azure": ("gcp",)}[self.cloud]
        for key in other:
            if getattr(self, key) is not None:
                raise ValueError(f"{key}: not allowed when cloud is {self.cloud}")
        return self

    @property
    def name(self) -> str:
        """Short resource-name prefix, e.g. ``acme-prod``."""
        return f"{self.customer}-{self.environment}"

    @property
    def is_prod(self) -> bool:
        """Production stacks get zone redundancy everywhere."""
        return self.environment == "prod"


_MODEL_LEVEL_KEY = re.compile(r"^(?P<key>[a-zA-Z.]+): (?P<reason>.*)$", re.DOTALL)


def parse(raw: Mapping[str, Any]) -> StackConfig:
    """Validate plain config data (keys without the namespace prefix).

    Raises :class:`StackConfigError` naming every offending key path.
    """
    try:
        return StackConfig.model_validate(dict(raw))
    except ValidationError as exc:
        problems: list[tuple[str, str]] = []
        for err in exc.errors():
            loc = field_path(err["loc"])
            reason = err["msg"].removeprefix("Value error, ")
            # Cross-field checks name their key in the message ("zones: ...").
            match = _MODEL_LEVEL_KEY.match(reason)
            if match:
                loc = f"{loc}.{match['key']}" if loc else match["key"]
                reason = match["reason"]
            problems.append((f"{NAMESPACE}:{loc}" if loc else NAMESPACE, reason))
        raise StackConfigError(problems) from None


def _decode(value: Any) -> Any:
    """Pulumi hands structured config over as JSON text; plain strings stay strings."""
    if isinstance(value, str) and value[:1] in "{[":
        return json.loads(value)
    return value


def raw_from_pulumi() -> dict[str, Any]:
    """Every ``meterplane:*`` key the engine passed to this program, decoded.

    ``pulumi.Config`` cannot enumerate keys, and rejecting unknown keys needs the full set:
    the engine passes config as the ``PULUMI_CONFIG`` JSON bag (or, under the SDK's test
    runtime, through ``set_all_config``), so both sources are read.
    """
    from pulumi.runtime import config as runtime_config  # noqa: PLC0415 keep import-time light

    merged: dict[str, Any] = {}
    env_bag = os.environ.get("PULUMI_CONFIG")
    if env_bag:
        merged.update(json.loads(env_bag))
    merged.update(runtime_config.CONFIG.get())
    prefix = f"{NAMESPACE}:"
    return {
        key.removeprefix(prefix): _decode(value)
        for key, value in merged.items()
        if key.startswith(prefix)
    }


def load() -> StackConfig:
    """Read and validate the running stack's ``meterplane`` config."""
    return parse(raw_from_pulumi())
