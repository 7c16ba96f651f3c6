"""A user-assigned identity for one Kubernetes service account, scoped to the container.

The federated credential trusts only the cluster's OIDC issuer and exactly one
``system:serviceaccount:<namespace>:<name>`` subject; the identity's only role is Storage
Blob Data Contributor on the archive container (not the account, not the group). The
account's customer-managed key is applied by the storage service, so no key role.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
from pulumi_azure_native import authorization, managedidentity

from components.azure import roles

TOKEN_AUDIENCE = "api://AzureADTokenExchange"  # noqa: S105 an audience, not a secret


@dataclass(frozen=True)
class WorkloadIdentityArgs:
    """Which service account, which issuer, which container."""

    resource_group_name: pulumi.Input[str]
    location: str
    oidc_issuer_url: pulumi.Input[str]
    namespace: str
    service_account: str
    container_id: pulumi.Input[str]
    subscription_id: str
    tags: dict[str, str]


class WorkloadIdentity(pulumi.ComponentResource):
    """Container-scoped Azure identity of a pod."""

    client_id: pulumi.Output[str]
    principal_id: pulumi.Output[str]

    def __init__(
        self, name: str, args: WorkloadIdentityArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("meterplane:azure:WorkloadIdentity", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        identity = managedidentity.UserAssignedIdentity(
            f"{name}-identity",
            resource_group_name=args.resource_group_name,
            resource_name_=name,
            location=args.location,
            tags=args.tags,
            opts=child,
        )
        managedidentity.FederatedIdentityCredential(
            f"{name}-federation",
            resource_group_name=args.resource_group_name,
            resource_name_=identity.name,
            federated_identity_credential_resource_name=f"{args.namespace}-{args.service_account}",
            issuer=args.oidc_issuer_url,
            subject=f"system:serviceaccount:{args.namespace}:{args.service_account}",
            audiences=[TOKEN_AUDIENCE],
            opts=child,
        )
        authorization.RoleAssignment(
            f"{name}-container",
            role_assignment_name=roles.assignment_name(name, "container"),
            scope=args.container_id,
            principal_id=identity.principal_id,
            principal_type="ServicePrincipal",
            role_definition_id=roles.role_definition_id(
                args.subscription_id, roles.STORAGE_BLOB_DATA_CONTRIBUTOR
            ),
            opts=child,
        )
        self.client_id = identity.client_id
        self.principal_id = identity.principal_id
        self.register_outputs({"clientId": self.client_id, "principalId": self.principal_id})
