"""Pulumi mocks that answer like the clouds would, so every dependent input is concrete.

Mocks echo inputs only; a real provider fills computed outputs (ids, ARNs, endpoints,
issuer URLs, kubeconfigs). Those are filled here per type token with values shaped like
the real ones and derived deterministically from the resource's name, so two renders of a
stack are byte-identical and a reviewer's diff shows only real changes.
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
import uuid
from typing import Any

import pulumi
from pulumi.runtime import MockCallArgs, MockResourceArgs, Mocks

ACCOUNT_ID = "123456789012"
AZURE_SUBSCRIPTION = "8f4c2d1a-5b6e-4c7d-9e8f-0a1b2c3d4e5f"
AZURE_TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
GCP_PROJECT_NUMBER = "412345678901"
_FAKE_CA = base64.b64encode(
    b"-----BEGIN CERTIFICATE-----\nMIIBmeterplanefake\n-----END CERTIFICATE-----\n"
).decode()

# azure-native type -> (ARM path under the resource group, input naming the resource).
_AZURE_PATHS = {
    "azure-native:network:VirtualNetwork": (
        "Microsoft.Network/virtualNetworks/{name}",
        "virtualNetworkName",
    ),
    "azure-native:network:Subnet": (
        "Microsoft.Network/virtualNetworks/{virtualNetworkName}/subnets/{name}",
        "subnetName",
    ),
    "azure-native:keyvault:Vault": ("Microsoft.KeyVault/vaults/{name}", "vaultName"),
    "azure-native:keyvault:Key": ("Microsoft.KeyVault/vaults/{vaultName}/keys/{name}", "keyName"),
    "azure-native:managedidentity:UserAssignedIdentity": (
        "Microsoft.ManagedIdentity/userAssignedIdentities/{name}",
        "resourceName",
    ),
    "azure-native:managedidentity:FederatedIdentityCredential": (
        "Microsoft.ManagedIdentity/userAssignedIdentities/{resourceName}"
        "/federatedIdentityCredentials/{name}",
        "federatedIdentityCredentialResourceName",
    ),
    "azure-native:containerservice:ManagedCluster": (
        "Microsoft.ContainerService/managedClusters/{name}",
        "resourceName",
    ),
    "azure-native:containerservice:AgentPool": (
        "Microsoft.ContainerService/managedClusters/{resourceName}/agentPools/{name}",
        "agentPoolName",
    ),
    "azure-native:network:PrivateEndpoint": (
        "Microsoft.Network/privateEndpoints/{name}",
        "privateEndpointName",
    ),
    "azure-native:network:PrivateDnsZoneGroup": (
        "Microsoft.Network/privateEndpoints/{privateEndpointName}/privateDnsZoneGroups/{name}",
        "privateDnsZoneGroupName",
    ),
    "azure-native:privatedns:PrivateZone": (
        "Microsoft.Network/privateDnsZones/{name}",
        "privateZoneName",
    ),
    "azure-native:privatedns:VirtualNetworkLink": (
        "Microsoft.Network/privateDnsZones/{privateZoneName}/virtualNetworkLinks/{name}",
        "virtualNetworkLinkName",
    ),
    "azure-native:storage:StorageAccount": (
        "Microsoft.Storage/storageAccounts/{name}",
        "accountName",
    ),
    "azure-native:storage:BlobServiceProperties": (
        "Microsoft.Storage/storageAccounts/{accountName}/blobServices/{name}",
        "blobServicesName",
    ),
    "azure-native:storage:BlobContainer": (
        "Microsoft.Storage/storageAccounts/{accountName}/blobServices/default/containers/{name}",
        "containerName",
    ),
    "azure-native:storage:ManagementPolicy": (
        "Microsoft.Storage/storageAccounts/{accountName}/managementPolicies/{name}",
        "managementPolicyName",
    ),
}


def _digest(*parts: str, length: int = 17) -> str:
    return hashlib.sha256("/".join(parts).encode()).hexdigest()[:length]


def _uuid(*parts: str) -> str:
    return str(uuid.UUID(hashlib.md5("/".join(parts).encode()).hexdigest()))  # noqa: S324 ids, not security


class PlanMocks(Mocks):
    """Realistic computed outputs for the resource types the program declares."""

    def __init__(self, region: str, gcp_project: str | None = None) -> None:
        self.region = region
        self.gcp_project = gcp_project or "meterplane-project"
        self._lock = threading.Lock()
        self.inputs: dict[tuple[str, str], dict[str, Any]] = {}
        self.ids: dict[tuple[str, str], str] = {}
        self._resource_groups: dict[str, str] = {}

    # --- resources ----------------------------------------------------------------
    def new_resource(self, args: MockResourceArgs) -> tuple[str | None, dict[Any, Any]]:
        """Return a realistic id and the inputs plus computed outputs."""
        typ, name, inputs = args.typ, args.name, dict(args.inputs)
        if not args.custom:
            resource_id, state = "", inputs
        elif typ.startswith("pulumi:providers:"):
            resource_id, state = _uuid(typ, name), inputs
        elif typ.startswith("aws:"):
            resource_id, state = self._aws(typ, name, inputs)
        elif typ.startswith("gcp:"):
            resource_id, state = self._gcp(typ, name, inputs)
        elif typ.startswith("azure-native:"):
            resource_id, state = self._azure(typ, name, inputs)
        elif typ.startswith("kubernetes:"):
            resource_id, state = self._kubernetes(typ, name, inputs)
        elif typ == "random:index/randomPassword:RandomPassword":
            # Letters and digits from the name: the shape of a real one, never a real one.
            length = int(inputs.get("length", 16))
            text = (_digest(typ, name, length=64) * (length // 64 + 1))[:length]
            resource_id, state = "none", {**inputs, "result": text}
        else:
            resource_id, state = f"{name}-{_digest(typ, name, length=8)}", inputs
        with self._lock:
            self.inputs[(typ, name)] = dict(args.inputs)
            self.ids[(typ, name)] = resource_id
        return resource_id, state

    def _aws(self, typ: str, name: str, inputs: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        region, account = self.region, ACCOUNT_ID
        short = typ.rsplit(":", maxsplit=1)[-1]
        prefixes = {
            "Vpc": "vpc",
            "Subnet": "subnet",
            "InternetGateway": "igw",
            "NatGateway": "nat",
            "Eip": "eipalloc",
            "RouteTable": "rtb",
            "RouteTableAssociation": "rtbassoc",
            "SecurityGroup": "sg",
            "VpcEndpoint": "vpce",
        }
        state = dict(inputs)
        if short in prefixes:
            rid = f"{prefixes[short]}-0{_digest(typ, name)}"
            state["arn"] = f"arn:aws:ec2:{region}:{account}:{prefixes[short]}/{rid}"
            return rid, state
        if typ == "aws:kms/key:Key":
            key_id = _uuid(typ, name)
            state.update(keyId=key_id, arn=f"arn:aws:kms:{region}:{account}:key/{key_id}")
            return key_id, state
        if typ == "aws:iam/role:Role":
            role = f"{name}-{_digest(typ, name, length=7)}"
            state.update(
                name=role,
                arn=f"arn:aws:iam::{account}:role/{role}",
                uniqueId="AROA" + _digest(name, length=17).upper(),
            )
            return role, state
        if typ == "aws:eks/cluster:Cluster":
            cluster = f"{name}-{_digest(typ, name, length=7)}"
            state.update(
                name=cluster,
                arn=f"arn:aws:eks:{region}:{account}:cluster/{cluster}",
                endpoint=f"https://{_digest(typ, name, length=32).upper()}.gr7.{region}"
                ".eks.amazonaws.com",
                certificateAuthority={"data": _FAKE_CA},
                status="ACTIVE",
            )
            return cluster, state
        if typ == "aws:s3/bucket:Bucket":
            bucket = inputs.get("bucket") or f"{name}-{_digest(name, length=7)}"
            state.update(
                bucket=bucket,
                arn=f"arn:aws:s3:::{bucket}",
                bucketRegionalDomainName=f"{bucket}.s3.{region}.amazonaws.com",
                region=region,
            )
            return bucket, state
        rid = f"{name}-{_digest(typ, name, length=8)}"
        state.setdefault(
            "arn", f"arn:aws:{typ.split(':')[1].split('/', maxsplit=1)[0]}:{region}:{account}:{rid}"
        )
        return rid, state

    def _gcp(self, typ: str, name: str, inputs: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        project, region = inputs.get("project") or self.gcp_project, self.region
        state = dict(inputs)
        resource_name = inputs.get("name") or f"{name}-{_digest(typ, name, length=7)}"
        state["name"] = resource_name
        if typ == "gcp:kms/keyRing:KeyRing":
            location = inputs.get("location", region)
            rid = f"projects/{project}/locations/{location}/keyRings/{resource_name}"
            return rid, state
        if typ == "gcp:kms/cryptoKey:CryptoKey":
            rid = f"{inputs['keyRing']}/cryptoKeys/{resource_name}"
            return rid, state
        if typ == "gcp:serviceaccount/account:Account":
            email = f"{inputs['accountId']}@{project}.iam.gserviceaccount.com"
            rid = f"projects/{project}/serviceAccounts/{email}"
            state.update(
                email=email,
                name=rid,
                member=f"serviceAccount:{email}",
                uniqueId=str(int(_digest(name, length=15), 16)),
            )
            return rid, state
        if typ == "gcp:storage/bucket:Bucket":
            state.update(
                url=f"gs://{resource_name}",
                selfLink=f"https://www.googleapis.com/storage/v1/b/{resource_name}",
            )
            return resource_name, state
        if typ == "gcp:container/cluster:Cluster":
            location = inputs.get("location", region)
            state.update(
                endpoint=f"10.{int(_digest(name, length=2), 16) % 200}.0.2",
                masterAuth={"clusterCaCertificate": _FAKE_CA},
                selfLink=f"https://container.googleapis.com/v1/projects/{project}/locations/{location}/clusters/{resource_name}",
            )
            return f"projects/{project}/locations/{location}/clusters/{resource_name}", state
        if typ == "gcp:dns/managedZone:ManagedZone":
            return f"projects/{project}/managedZones/{resource_name}", state
        if typ == "gcp:dns/recordSet:RecordSet":
            zone = inputs.get("managedZone", "zone")
            record = f"{inputs.get('name')}/{inputs.get('type')}"
            return f"projects/{project}/managedZones/{zone}/rrsets/{record}", state
        if typ.startswith("gcp:compute/"):
            kind = typ.split("/")[1].split(":", maxsplit=1)[0]
            scope = "global" if kind in {"network", "firewall"} else f"regions/{region}"
            rid = f"projects/{project}/{scope}/{kind}s/{resource_name}"
            state["selfLink"] = f"https://www.googleapis.com/compute/v1/{rid}"
            return rid, state
        return f"projects/{project}/{name}-{_digest(typ, name, length=8)}", state

    def _azure(self, typ: str, name: str, inputs: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        state = dict(inputs)
        identity = inputs.get("identity")
        if isinstance(identity, dict) and isinstance(identity.get("userAssignedIdentities"), list):
            # Inputs list identity ids; ARM answers with a map id -> {clientId, principalId}.
            state["identity"] = {
                **identity,
                "userAssignedIdentities": {
                    ref: {"clientId": _uuid("client", ref), "principalId": _uuid("principal", ref)}
                    for ref in identity["userAssignedIdentities"]
                },
            }
        sub = f"/subscriptions/{AZURE_SUBSCRIPTION}"
        if typ == "azure-native:resources:ResourceGroup":
            rg = inputs.get("resourceGroupName") or name
            state["name"] = rg
            return f"{sub}/resourceGroups/{rg}", state
        if typ == "azure-native:authorization:RoleAssignment":
            assignment = inputs.get("roleAssignmentName") or _uuid(typ, name)
            state["name"] = assignment
            scope = inputs["scope"]
            return f"{scope}/providers/Microsoft.Authorization/roleAssignments/{assignment}", state
        known = _AZURE_PATHS.get(typ)
        if known is None:
            resource_name = f"{name}-{_digest(typ, name, length=6)}"
            path = f"Microsoft.Unknown/{typ.rsplit(':', maxsplit=1)[-1]}/{resource_name}"
        else:
            template, name_key = known
            resource_name = str(inputs.get(name_key) or name)
            fields = {k: v for k, v in inputs.items() if isinstance(v, str)}
            path = template.format(**{**fields, "name": resource_name})
        state["name"] = resource_name
        rid = f"{sub}/resourceGroups/{inputs.get('resourceGroupName', 'rg')}/providers/{path}"
        self._azure_outputs(typ, name, resource_name, inputs, state)
        return rid, state

    def _azure_outputs(
        self, typ: str, name: str, resource_name: str, inputs: dict[str, Any], state: dict[str, Any]
    ) -> None:
        if typ == "azure-native:managedidentity:UserAssignedIdentity":
            state.update(
                clientId=_uuid("client", name),
                principalId=_uuid("principal", name),
                tenantId=AZURE_TENANT,
            )
        elif typ == "azure-native:keyvault:Vault":
            state["properties"] = {
                **inputs.get("properties", {}),
                "vaultUri": f"https://{resource_name}.vault.azure.net/",
            }
        elif typ == "azure-native:keyvault:Key":
            base = f"https://{inputs['vaultName']}.vault.azure.net/keys/{resource_name}"
            state.update(keyUri=base, keyUriWithVersion=f"{base}/{_digest(name, length=32)}")
        elif typ == "azure-native:containerservice:ManagedCluster":
            state["oidcIssuerProfile"] = {
                **inputs.get("oidcIssuerProfile", {}),
                "issuerURL": f"https://{self.region}.oic.prod-aks.azure.com/{AZURE_TENANT}/"
                f"{_uuid('oidc', name)}/",
            }
            state["fqdn"] = (
                f"{resource_name}-{_digest(name, length=8)}.privatelink.{self.region}.azmk8s.io"
            )
        elif typ == "azure-native:storage:StorageAccount":
            state["primaryEndpoints"] = {
                "blob": f"https://{resource_name}.blob.core.windows.net/",
                "dfs": f"https://{resource_name}.dfs.core.windows.net/",
            }

    def _kubernetes(
        self, typ: str, name: str, inputs: dict[str, Any]
    ) -> tuple[str, dict[str, Any]]:
        state = dict(inputs)
        if typ.startswith("kubernetes:helm.sh/"):
            namespace = inputs.get("namespace", "default")
            release = inputs.get("name", name)
            state["status"] = {
                "status": "deployed",
                "name": release,
                "namespace": namespace,
                "version": inputs.get("version"),
            }
            return f"{namespace}/{release}", state
        metadata = inputs.get("metadata") or {}
        namespace = metadata.get("namespace")
        resource_name = metadata.get("name", name)
        state["metadata"] = {**metadata, "name": resource_name, "uid": _uuid(typ, name)}
        return (f"{namespace}/{resource_name}" if namespace else resource_name), state

    # --- invokes --------------------------------------------------------------------
    def call(self, args: MockCallArgs) -> tuple[dict[Any, Any], list[tuple[str, str]] | None]:
        """Answer the data-source lookups the program makes, as the clouds would."""
        invoke, region = args.token, self.region
        if invoke == "aws:index/getAvailabilityZones:getAvailabilityZones":
            names = [f"{region}{letter}" for letter in "abcdef"]
            return {
                "names": names,
                "zoneIds": [f"use1-az{i}" for i in range(1, 7)],
                "id": region,
            }, []
        if invoke == "aws:index/getCallerIdentity:getCallerIdentity":
            return {
                "accountId": ACCOUNT_ID,
                "arn": f"arn:aws:iam::{ACCOUNT_ID}:root",
                "userId": ACCOUNT_ID,
            }, []
        if invoke == "gcp:compute/getZones:getZones":
            return {
                "names": [f"{region}-{letter}" for letter in "abcf"],
                "project": self.gcp_project,
                "region": region,
            }, []
        if invoke == "gcp:organizations/getProject:getProject":
            return {
                "number": GCP_PROJECT_NUMBER,
                "projectId": self.gcp_project,
                "name": self.gcp_project,
            }, []
        if invoke == "gcp:storage/getProjectServiceAccount:getProjectServiceAccount":
            return {
                "emailAddress": f"service-{GCP_PROJECT_NUMBER}"
                "@gs-project-accounts.iam.gserviceaccount.com"
            }, []
        if invoke == "azure-native:authorization:getClientConfig":
            return {
                "subscriptionId": AZURE_SUBSCRIPTION,
                "tenantId": AZURE_TENANT,
                "objectId": _uuid("deployer"),
                "clientId": _uuid("deployer-client"),
            }, []
        if invoke == "azure-native:containerservice:listManagedClusterUserCredentials":
            kubeconfig = json.dumps(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "clusters": [
                        {
                            "name": args.args.get("resourceName"),
                            "cluster": {
                                "server": f"https://{args.args.get('resourceName')}.privatelink.{region}.azmk8s.io:443",
                                "certificate-authority-data": _FAKE_CA,
                            },
                        }
                    ],
                }
            )
            return {
                "kubeconfigs": [
                    {"name": "clusterUser", "value": base64.b64encode(kubeconfig.encode()).decode()}
                ]
            }, []
        pulumi.log.warn(f"plan mocks: no answer for invoke {invoke}")
        return {}, []
