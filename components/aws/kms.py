"""The customer's KMS key: encrypts cluster secrets, the archive bucket and volumes.

Rotation is on and deletion waits the maximum 30 days, because losing this key loses
the archive. When the customer brings an existing key (``existing_key_arn``) nothing is
created and the key's policy stays the customer's business.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws


@dataclass(frozen=True)
class KeyArgs:
    """What the key is for, or the ARN of a key the customer already has."""

    description: str
    tags: dict[str, str]
    existing_key_arn: str | None = None


class Key(pulumi.ComponentResource):
    """A symmetric KMS key with automatic rotation."""

    arn: pulumi.Output[str]

    def __init__(
        self, name: str, args: KeyArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("meterplane:aws:Key", name, None, opts)
        if args.existing_key_arn is not None:
            self.arn = pulumi.Output.from_input(args.existing_key_arn)
        else:
            key = aws.kms.Key(
                f"{name}-key",
                description=args.description,
                enable_key_rotation=True,
                rotation_period_in_days=365,
                deletion_window_in_days=30,
                key_usage="ENCRYPT_DECRYPT",
                tags=args.tags,
                opts=pulumi.ResourceOptions(parent=self),
            )
            aws.kms.Alias(
                f"{name}-alias",
                name=f"alias/{name}",
                target_key_id=key.key_id,
                opts=pulumi.ResourceOptions(parent=self),
            )
            self.arn = key.arn
        self.register_outputs({"arn": self.arn})
