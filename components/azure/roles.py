"""Built-in Azure role definitions the components assign, and stable assignment names."""

from __future__ import annotations

import uuid

KEY_VAULT_CRYPTO_OFFICER = "14b46e9e-c2b7-41b4-b07b-48a6ebf60603"
KEY_VAULT_CRYPTO_USER = "12338af0-0e69-4776-bea7-57ae8d297424"
KEY_VAULT_CRYPTO_SERVICE_ENCRYPTION_USER = "e147488a-f6f5-4113-8e2d-b22465e65bf6"
STORAGE_BLOB_DATA_CONTRIBUTOR = "ba92f5b4-2d11-453d-a403-e96b0029c9fe"

_NAMESPACE = uuid.UUID("6b1f7c4e-8a3d-4f0e-9c2b-5d7e1a3f9b20")


def role_definition_id(subscription_id: str, role: str) -> str:
    """Full resource id of a built-in role in the subscription."""
    return (
        f"/subscriptions/{subscription_id}/providers/Microsoft.Authorization/roleDefinitions/{role}"
    )


def assignment_name(*parts: str) -> str:
    """Role assignments are named by GUID; derive it so re-runs never duplicate one."""
    return str(uuid.uuid5(_NAMESPACE, "/".join(parts)))
