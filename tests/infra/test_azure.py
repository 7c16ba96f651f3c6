"""Azure stack (initech-prod) under Pulumi mocks: zones, Key Vault, AKS KMS, storage, identities."""

from __future__ import annotations

from typing import Any

import pulumi
import pytest

from components.azure import roles
from tests.infra.harness import STACKS, Rendered, check, of_type, one, rendered


@pytest.fixture(scope="module")
def azure() -> Rendered:
    return rendered(STACKS["azure"])


@pulumi.runtime.test
def test_prod_node_pools_span_three_zones(azure: Rendered) -> Any:
    view = azure.view

    def verify(_: list[Any]) -> None:
        cluster = one(view, "azure-native:containerservice:ManagedCluster")
        (system,) = cluster.inputs["agentPoolProfiles"]
        assert set(system["availabilityZones"]) == {"1", "2", "3"}
        pools = of_type(view, "azure-native:containerservice:AgentPool")
        assert {z for p in pools for z in p.inputs["availabilityZones"]} == {"1", "2", "3"}
        assert cluster.inputs["apiServerAccessProfile"]["enablePrivateCluster"] is True
        assert cluster.inputs["networkProfile"]["networkPolicy"] == "cilium"
        assert cluster.inputs["oidcIssuerProfile"] == {"enabled": True}
        assert cluster.inputs["securityProfile"]["workloadIdentity"] == {"enabled": True}

    return check(azure.program.foundation.cluster.name).apply(verify)


@pulumi.runtime.test
def test_key_rotates_and_encrypts_etcd(azure: Rendered) -> Any:
    view = azure.view

    def verify(args: list[Any]) -> None:
        key_uri, vault_id = args
        vault = one(view, "azure-native:keyvault:Vault")
        assert vault.id == vault_id
        assert vault.inputs["properties"]["enablePurgeProtection"] is True
        key = one(view, "azure-native:keyvault:Key")
        actions = [
            a["action"]["type"]
            for a in key.inputs["properties"]["rotationPolicy"]["lifetimeActions"]
        ]
        assert "rotate" in actions
        cluster = one(view, "azure-native:containerservice:ManagedCluster")
        kms = cluster.inputs["securityProfile"]["azureKeyVaultKms"]
        assert kms["enabled"] is True
        assert kms["keyId"] == key_uri
        assert key_uri.startswith(
            f"https://{key.inputs['vaultName']}.vault.azure.net/keys/{key.inputs['keyName']}/"
        )

    vault = azure.program.foundation.vault
    return check(vault.key_uri_with_version, vault.vault_id).apply(verify)


@pulumi.runtime.test
def test_storage_cmk_private_tls_and_expiring(azure: Rendered) -> Any:
    view = azure.view
    retention = azure.program.config.archive.retention_days

    def verify(args: list[Any]) -> None:
        account_name, vault_uri, key_name = args
        account = one(view, "azure-native:storage:StorageAccount")
        assert account.inputs["accountName"] == account_name
        assert account.inputs["sku"] == {"name": "Standard_ZRS"}
        encryption = account.inputs["encryption"]
        assert encryption["keySource"] == "Microsoft.Keyvault"
        assert encryption["keyVaultProperties"] == {"keyName": key_name, "keyVaultUri": vault_uri}
        assert account.inputs["allowBlobPublicAccess"] is False
        assert account.inputs["minimumTlsVersion"] == "TLS1_2"
        assert account.inputs["enableHttpsTrafficOnly"] is True
        policies = [
            p
            for p in of_type(view, "azure-native:storage:ManagementPolicy")
            if p.inputs["accountName"] == account_name
        ]
        (policy,) = policies
        deletes = [
            rule["definition"]["actions"]["baseBlob"]["delete"]["daysAfterModificationGreaterThan"]
            for rule in policy.inputs["policy"]["rules"]
            if rule["enabled"]
        ]
        assert deletes == [float(retention)]
        (container,) = of_type(view, "azure-native:storage:BlobContainer")
        assert container.inputs["publicAccess"] == "None"

    vault = azure.program.foundation.vault
    return check(
        azure.program.foundation.archive.account_name, vault.vault_uri, vault.key_name
    ).apply(verify)


@pulumi.runtime.test
def test_workload_identities_reach_only_the_container(azure: Rendered) -> Any:
    view = azure.view
    foundation = azure.program.foundation

    def verify(args: list[Any]) -> None:
        container_id, issuer, *ids = args
        client_ids, principal_ids = ids[:2], set(ids[2:])
        identities = {
            r.name: r for r in of_type(view, "azure-native:managedidentity:UserAssignedIdentity")
        }
        workload = [foundation.identities[a] for a in ("archiver", "flink")]
        assert len(client_ids) == len(workload) == 2
        contributor = roles.role_definition_id(
            "8f4c2d1a-5b6e-4c7d-9e8f-0a1b2c3d4e5f", roles.STORAGE_BLOB_DATA_CONTRIBUTOR
        )
        workload_assignments = [
            a
            for a in of_type(view, "azure-native:authorization:RoleAssignment")
            if a.inputs["principalId"] in principal_ids
        ]
        # Each workload identity holds exactly one role: blob data on the archive container.
        assert len(workload_assignments) == 2
        assert {a.inputs["roleDefinitionId"] for a in workload_assignments} == {contributor}
        assert {a.inputs["scope"] for a in workload_assignments} == {container_id}
        credentials = of_type(view, "azure-native:managedidentity:FederatedIdentityCredential")
        assert {c.inputs["subject"] for c in credentials} == {
            "system:serviceaccount:metering:archiver",
            "system:serviceaccount:metering:flink",
        }
        assert all(
            c.inputs["issuer"] == issuer and c.inputs["audiences"] == ["api://AzureADTokenExchange"]
            for c in credentials
        )
        assert {f"{n}-identity" for n in ("initech-prod-archiver", "initech-prod-flink")} <= set(
            identities
        )
        accounts = [
            r
            for r in view.resources
            if r.type == "kubernetes:core/v1:ServiceAccount"
            and r.inputs["metadata"]["name"] in {"archiver", "flink"}
        ]
        assert {
            a.inputs["metadata"]["annotations"]["azure.workload.identity/client-id"]
            for a in accounts
        } == set(client_ids)

    return check(
        foundation.archive.container_id,
        foundation.cluster.oidc_issuer_url,
        *[i.client_id for i in foundation.identities.values()],
        *[i.principal_id for i in foundation.identities.values()],
    ).apply(verify)
