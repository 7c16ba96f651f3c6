"""Cloud KMS key ring and key with rotation, usable by GKE and Cloud Storage.

GKE's and Cloud Storage's service agents are granted encrypt/decrypt on this key only:
without those grants, secrets encryption and CMEK uploads fail. Key rings cannot be
deleted in GCP, so the name includes the stack and never changes. With an existing key
(``existing_key_id``) nothing is created, and the grants are the customer's to make.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pulumi
import pulumi_gcp as gcp

ROTATION_PERIOD = "7776000s"  # 90 days


@dataclass(frozen=True)
class KeyArgs:
    """Location of the key and the service agents that must use it."""

    project: str
    location: str
    service_agents: Sequence[str]  # emails of Google-managed agents needing the key
    labels: dict[str, str]
    existing_key_id: str | None = None


class Key(pulumi.ComponentResource):
    """A symmetric Cloud KMS key with 90-day rotation."""

    key_id: pulumi.Output[str]

    def __init__(
        self, name: str, args: KeyArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("meterplane:gcp:Key", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.grants: list[pulumi.Resource] = []
        if args.existing_key_id is not None:
            self.key_id = pulumi.Output.from_input(args.existing_key_id)
        else:
            ring = gcp.kms.KeyRing(
                f"{name}-ring",
                project=args.project,
                name=f"{name}-ring",
                location=args.location,
                opts=child,
            )
            key = gcp.kms.CryptoKey(
                f"{name}-key",
                name=f"{name}-key",
                key_ring=ring.id,
                purpose="ENCRYPT_DECRYPT",
                rotation_period=ROTATION_PERIOD,
                labels=args.labels,
                destroy_scheduled_duration="2592000s",  # 30 days to undo a mistaken delete
                opts=pulumi.ResourceOptions(parent=self, protect=False),
            )
            self.key_id = key.id
            self.grants = [
                gcp.kms.CryptoKeyIAMMember(
                    f"{name}-agent-{index}",
                    crypto_key_id=key.id,
                    role="roles/cloudkms.cryptoKeyEncrypterDecrypter",
                    member=f"serviceAccount:{agent}",
                    opts=child,
                )
                for index, agent in enumerate(args.service_agents)
            ]
        self.register_outputs({"keyId": self.key_id})
