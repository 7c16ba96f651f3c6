"""The rendered stack: plain data shared by ``meterplane plan``, the policy check and tests."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class RenderedResource:
    """One resource as the engine would receive it (DESIGN.md 3.5)."""

    urn: str
    type: str
    name: str
    id: str | None  # None for component resources, which have no physical id
    parent: str | None  # urn of the parent; None for resources directly under the stack
    inputs: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The resource in the ``--json`` contract shape."""
        return {
            "urn": self.urn,
            "type": self.type,
            "name": self.name,
            "id": self.id,
            "parent": self.parent,
            "inputs": self.inputs,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RenderedResource:
        """Inverse of :meth:`to_json`."""
        return cls(
            urn=data["urn"],
            type=data["type"],
            name=data["name"],
            id=data["id"],
            parent=data["parent"],
            inputs=data["inputs"],
        )


@dataclass(frozen=True)
class RenderedStack:
    """Every resource one stack would declare, plus its ``meterplane`` config."""

    stack: str
    config: dict[str, Any]
    resources: list[RenderedResource]

    def to_json(self) -> dict[str, Any]:
        """The ``meterplane plan --json`` object: ``{"stack", "resources"}``."""
        return {"stack": self.stack, "resources": [r.to_json() for r in self.resources]}

    def of_type(self, type_token: str) -> list[RenderedResource]:
        """Resources with the given Pulumi type token, in URN order."""
        return [r for r in self.resources if r.type == type_token]

    def by_urn(self, urn: str) -> RenderedResource:
        """The resource with this URN (KeyError if absent)."""
        for resource in self.resources:
            if resource.urn == urn:
                return resource
        raise KeyError(urn)

    def by_id(self, resource_id: str) -> list[RenderedResource]:
        """Resources whose rendered id is ``resource_id`` (to follow references)."""
        return [r for r in self.resources if r.id == resource_id]


class PlanError(Exception):
    """A stack could not be rendered; the message names the stack and the reason."""
