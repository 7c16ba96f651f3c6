"""Key Vault (purge protection, RBAC) with a rotating RSA key.

Purge protection is what Azure requires before a storage account or AKS may use the key
(a purged key would brick both). The deploying principal gets Crypto Officer on this vault
only, so it can create and rotate the key; nothing else is granted here.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
from pulumi_azure_native import authorization, keyvault

from components.azure import roles


@dataclass(frozen=True)
class KeyVaultArgs:
    """Placement and the principal that deploys the stack."""

    resource_group_name: pulumi.Input[str]
    location: str
    vault_name: str
    tenant_id: str
    subscription_id: str
    deployer_object_id: str
    tags: dict[str, str]

    def __post_init__(self) -> None:
        if not 3 <= len(self.vault_name) <= 24:
            raise ValueError("KeyVaultArgs.vault_name must be 3-24 characters")


class KeyVault(pulumi.ComponentResource):
    """The customer-managed key of the stack."""

    vault_id: pulumi.Output[str]
    vault_uri: pulumi.Output[str]
    key_name: pulumi.Output[str]
    key_uri_with_version: pulumi.Output[str]

    def __init__(
        self, name: str, args: KeyVaultArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("meterplane:azure:KeyVault", name, None, opts)
        vault = keyvault.Vault(
            f"{name}-vault",
            resource_group_name=args.resource_group_name,
            vault_name=args.vault_name,
            location=args.location,
            properties={
                "tenant_id": args.tenant_id,
                "sku": {"family": "A", "name": "premium"},
                "enable_rbac_authorization": True,
                "enable_soft_delete": True,
                "soft_delete_retention_in_days": 90,
                "enable_purge_protection": True,
            },
            tags=args.tags,
            opts=pulumi.ResourceOptions(parent=self),
        )
        officer = authorization.RoleAssignment(
            f"{name}-deployer",
            role_assignment_name=roles.assignment_name(name, "deployer"),
            scope=vault.id,
            principal_id=args.deployer_object_id,
            role_definition_id=roles.role_definition_id(
                args.subscription_id, roles.KEY_VAULT_CRYPTO_OFFICER
            ),
            opts=pulumi.ResourceOptions(parent=self),
        )
        key = keyvault.Key(
            f"{name}-key",
            resource_group_name=args.resource_group_name,
            vault_name=vault.name,
            key_name="meterplane",
            properties={
                "kty": "RSA",
                "key_size": 3072,
                "key_ops": ["wrapKey", "unwrapKey", "encrypt", "decrypt"],
                "rotation_policy": {
                    "attributes": {"expiry_time": "P2Y"},
                    "lifetime_actions": [
                        {"action": {"type": "rotate"}, "trigger": {"time_after_create": "P90D"}},
                        {"action": {"type": "notify"}, "trigger": {"time_before_expiry": "P30D"}},
                    ],
                },
            },
            tags=args.tags,
            opts=pulumi.ResourceOptions(parent=self, depends_on=[officer]),
        )
        self.vault_id = vault.id
        self.vault_uri = vault.properties.apply(lambda p: p.vault_uri or "")
        self.key_name = key.name
        self.key_uri_with_version = key.key_uri_with_version
        self.register_outputs({"vaultId": self.vault_id, "keyUri": self.key_uri_with_version})
