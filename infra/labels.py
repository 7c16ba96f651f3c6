"""The stack's common tags and labels: customer, environment and the managing tool.

Every resource that takes tags carries them, so the customer's billing and inventory
tooling can tell Meterplane's resources apart. Key spelling differs by provider: colons
are legal in AWS and Azure tag keys, not in GCP labels or Kubernetes label keys.
"""

from __future__ import annotations

from infra.config import StackConfig

MANAGED_BY = "pulumi"


def cloud_tags(cfg: StackConfig) -> dict[str, str]:
    """AWS and Azure tags."""
    return {
        "meterplane:customer": cfg.customer,
        "meterplane:environment": cfg.environment,
        "meterplane:managed-by": MANAGED_BY,
    }


def gcp_labels(cfg: StackConfig) -> dict[str, str]:
    """GCP resource labels (lowercase keys, no colons)."""
    return {"customer": cfg.customer, "environment": cfg.environment, "managed-by": MANAGED_BY}


def k8s_labels(cfg: StackConfig) -> dict[str, str]:
    """Kubernetes ``metadata.labels`` on every object."""
    return {
        "meterplane.io/customer": cfg.customer,
        "meterplane.io/environment": cfg.environment,
        "app.kubernetes.io/managed-by": MANAGED_BY,
        "app.kubernetes.io/part-of": "meterplane",
    }
