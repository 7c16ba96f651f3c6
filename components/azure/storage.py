"""The cold-tier storage account: ZRS, customer-managed key, private, TLS 1.2+, expiring.

Shared-key access is off (Entra ID only), public blob access is off, infrastructure
encryption doubles the encryption at rest, and a lifecycle management policy deletes
blobs ``retention_days`` after their last modification. The account is reached through
private endpoints (blob and dfs) in the node subnet with private DNS zones, so its traffic
stays in the VNet and public network access is off.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
from pulumi_azure_native import authorization, managedidentity, network, privatedns, storage

from components.azure import roles

CONTAINER = "archive"


def _endpoint_name(service: str) -> str:
    return f"privatelink.{service}.core.windows.net"


@dataclass(frozen=True)
class ArchiveStorageArgs:
    """Placement, key and retention of the archive."""

    resource_group_name: pulumi.Input[str]
    location: str
    account_name: str
    vault_id: pulumi.Input[str]
    vault_uri: pulumi.Input[str]
    key_name: pulumi.Input[str]
    subscription_id: str
    retention_days: int
    subnet_id: pulumi.Input[str]
    vnet_id: pulumi.Input[str]
    tags: dict[str, str]

    def __post_init__(self) -> None:
        if not 3 <= len(self.account_name) <= 24 or not self.account_name.isalnum():
            raise ValueError("ArchiveStorageArgs.account_name must be 3-24 letters and digits")
        if self.retention_days < 1:
            raise ValueError("ArchiveStorageArgs.retention_days must be positive")


class ArchiveStorage(pulumi.ComponentResource):
    """The customer's archive of raw events."""

    account_name: pulumi.Output[str]
    container_id: pulumi.Output[str]
    dfs_url: pulumi.Output[str]

    def __init__(
        self, name: str, args: ArchiveStorageArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("meterplane:azure:ArchiveStorage", name, None, opts)
        self._name, self._args = name, args
        account = self._build_account()
        container = self._build_container(account)
        for service in ("blob", "dfs"):
            self._private_endpoint(self._name, self._args, account, service)
        self.account_name = account.name
        self.container_id = container.id
        self.dfs_url = account.name.apply(lambda a: f"abfss://{CONTAINER}@{a}.dfs.core.windows.net")
        self.register_outputs({"accountName": self.account_name, "containerId": self.container_id})

    def _build_account(self) -> storage.StorageAccount:
        """The ZRS account, encrypted with the customer key through its own identity."""
        identity = managedidentity.UserAssignedIdentity(
            f"{self._name}-cmk",
            resource_group_name=self._args.resource_group_name,
            resource_name_=f"{self._name}-cmk",
            location=self._args.location,
            tags=self._args.tags,
            opts=pulumi.ResourceOptions(parent=self),
        )
        key_access = authorization.RoleAssignment(
            f"{self._name}-cmk",
            role_assignment_name=roles.assignment_name(self._name, "cmk"),
            scope=self._args.vault_id,
            principal_id=identity.principal_id,
            principal_type="ServicePrincipal",
            role_definition_id=roles.role_definition_id(
                self._args.subscription_id, roles.KEY_VAULT_CRYPTO_SERVICE_ENCRYPTION_USER
            ),
            opts=pulumi.ResourceOptions(parent=self),
        )
        return storage.StorageAccount(
            f"{self._name}-account",
            resource_group_name=self._args.resource_group_name,
            account_name=self._args.account_name,
            location=self._args.location,
            kind="StorageV2",
            sku={"name": "Standard_ZRS"},
            access_tier="Hot",
            identity={"type": "UserAssigned", "user_assigned_identities": [identity.id]},
            encryption={
                "key_source": "Microsoft.Keyvault",
                "key_vault_properties": {
                    "key_name": self._args.key_name,
                    "key_vault_uri": self._args.vault_uri,
                },
                "encryption_identity": {"encryption_user_assigned_identity": identity.id},
                "require_infrastructure_encryption": True,
                "services": {"blob": {"enabled": True, "key_type": "Account"}},
            },
            allow_blob_public_access=False,
            allow_shared_key_access=False,
            enable_https_traffic_only=True,
            minimum_tls_version="TLS1_2",
            public_network_access="Disabled",
            tags=self._args.tags,
            opts=pulumi.ResourceOptions(parent=self, depends_on=[key_access]),
        )

    def _build_container(self, account: storage.StorageAccount) -> storage.BlobContainer:
        """Versioned blob service, the private container and its expiry policy."""
        days = self._args.retention_days
        storage.BlobServiceProperties(
            f"{self._name}-blob-service",
            resource_group_name=self._args.resource_group_name,
            account_name=account.name,
            blob_services_name="default",
            is_versioning_enabled=True,
            delete_retention_policy={"enabled": True, "days": 7},
            opts=pulumi.ResourceOptions(parent=self),
        )
        container = storage.BlobContainer(
            f"{self._name}-container",
            resource_group_name=self._args.resource_group_name,
            account_name=account.name,
            container_name=CONTAINER,
            public_access="None",
            opts=pulumi.ResourceOptions(parent=self),
        )
        storage.ManagementPolicy(
            f"{self._name}-lifecycle",
            resource_group_name=self._args.resource_group_name,
            account_name=account.name,
            management_policy_name="default",
            policy={
                "rules": [
                    {
                        "name": "expire-archive",
                        "enabled": True,
                        "type": "Lifecycle",
                        "definition": {
                            "filters": {
                                "blob_types": ["blockBlob"],
                                "prefix_match": [f"{CONTAINER}/"],
                            },
                            "actions": {
                                "base_blob": {
                                    "delete": {"days_after_modification_greater_than": days}
                                },
                                "version": {"delete": {"days_after_creation_greater_than": 7}},
                            },
                        },
                    }
                ]
            },
            opts=pulumi.ResourceOptions(parent=self),
        )
        return container

    def _private_endpoint(
        self, name: str, args: ArchiveStorageArgs, account: storage.StorageAccount, service: str
    ) -> None:
        child = pulumi.ResourceOptions(parent=self)
        zone = privatedns.PrivateZone(
            f"{name}-{service}-zone",
            resource_group_name=args.resource_group_name,
            private_zone_name=_endpoint_name(service),
            location="Global",
            tags=args.tags,
            opts=child,
        )
        privatedns.VirtualNetworkLink(
            f"{name}-{service}-link",
            resource_group_name=args.resource_group_name,
            private_zone_name=zone.name,
            virtual_network_link_name=f"{name}-{service}",
            location="Global",
            virtual_network={"id": args.vnet_id},
            registration_enabled=False,
            tags=args.tags,
            opts=child,
        )
        endpoint = network.PrivateEndpoint(
            f"{name}-{service}-endpoint",
            resource_group_name=args.resource_group_name,
            private_endpoint_name=f"{name}-{service}",
            location=args.location,
            subnet={"id": args.subnet_id},
            private_link_service_connections=[
                {
                    "name": f"{name}-{service}",
                    "private_link_service_id": account.id,
                    "group_ids": [service],
                }
            ],
            tags=args.tags,
            opts=child,
        )
        network.PrivateDnsZoneGroup(
            f"{name}-{service}-dns",
            resource_group_name=args.resource_group_name,
            private_endpoint_name=endpoint.name,
            private_dns_zone_group_name="default",
            private_dns_zone_configs=[{"name": service, "private_dns_zone_id": zone.id}],
            opts=child,
        )
