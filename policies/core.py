"""The plain-data model every Meterplane policy is written against.

A policy is a pure function over resources as the Pulumi engine sees them: a type token
(``aws:s3/bucket:Bucket``) and the resource's properties under their engine names
(camelCase, numbers as floats). The same functions run inside CrossGuard (``policies/
crossguard.py`` adapts ``pulumi_policy`` arguments to this model) and inside
``meterplane policy-check`` (which adapts the offline rendering), so neither side can drift
from the other.

Values that the engine cannot know during a preview (ids and ARNs of resources not yet
created) arrive as :data:`UNKNOWN`. A validator never reports a violation on an unknown
value: it cannot prove one, and ``pulumi up`` runs the policies again with the values known.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final


class _Unknown:
    """Marker for a property value that is not known until the resource exists."""

    _instance: _Unknown | None = None

    def __new__(cls) -> _Unknown:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "<unknown>"


UNKNOWN: Final = _Unknown()


def is_unknown(value: object) -> bool:
    """True when ``value`` is the engine's not-yet-known marker."""
    return value is UNKNOWN


class PolicyConfigError(ValueError):
    """A policy-pack configuration entry is malformed (unknown policy, level or option)."""


class Severity(enum.StrEnum):
    """How bad a violation is; mirrors ``pulumi_policy.Severity``."""

    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"


class Level(enum.StrEnum):
    """Enforcement level; the names and values of ``pulumi_policy.EnforcementLevel``."""

    ADVISORY = "advisory"
    MANDATORY = "mandatory"
    REMEDIATE = "remediate"
    DISABLED = "disabled"


@dataclass(frozen=True)
class Resource:
    """One resource of a stack, as a policy sees it.

    ``dependencies`` maps a top-level property name to the URNs of the resources whose
    outputs flowed into it (CrossGuard's ``property_dependencies``); joins use it when a
    referenced id is still unknown during a preview.
    """

    type: str
    name: str
    urn: str
    props: Mapping[str, Any]
    id: str | None = None
    parent: str | None = None
    dependencies: Mapping[str, tuple[str, ...]] = field(default_factory=dict)


@dataclass(frozen=True)
class Violation:
    """One broken rule: what is wrong and on which resource (``None``: the whole stack)."""

    message: str
    urn: str | None = None


@dataclass(frozen=True)
class Context:
    """What a validator may read besides the resources.

    ``stack`` is the stack's ``meterplane`` configuration without the prefix (``customer``,
    ``environment``, ``archive``...); it is empty when the caller could not read it, and
    validators then check only what does not depend on it. ``options`` are this policy's
    configuration properties with the schema defaults applied.
    """

    stack: Mapping[str, Any] = field(default_factory=dict)
    options: Mapping[str, Any] = field(default_factory=dict)

    def option(self, key: str) -> Any:
        """One option of the policy (always present: defaults come from the schema)."""
        return self.options[key]


ResourceValidator = Callable[[Resource, Context], Iterable[str]]
StackValidator = Callable[[Sequence[Resource], Context], Iterable[Violation]]


@dataclass(frozen=True)
class PolicySpec:
    """A policy: identity, documentation, options and exactly one pure validator.

    ``options`` is the JSON-schema ``properties`` of the policy's configuration; every
    property carries a ``default`` so the validator always sees a complete mapping.
    ``mirrors`` names the well-known checks (Checkov ids) the policy corresponds to.
    """

    name: str
    description: str
    domain: str
    severity: Severity
    remediation: str
    validate_resource: ResourceValidator | None = None
    validate_stack: StackValidator | None = None
    options: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    mirrors: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if (self.validate_resource is None) == (self.validate_stack is None):
            raise TypeError(f"policy {self.name}: give exactly one of resource or stack validator")
        for key, schema in self.options.items():
            if "default" not in schema:
                raise TypeError(f"policy {self.name}: option {key} needs a default")

    @property
    def is_stack_policy(self) -> bool:
        """Stack policies see every resource at once (joins); resource policies one."""
        return self.validate_stack is not None

    def resolve_options(self, given: Mapping[str, Any] | None) -> dict[str, Any]:
        """Schema defaults overlaid with ``given``; unknown keys are a configuration error."""
        resolved = {key: schema["default"] for key, schema in self.options.items()}
        for key, value in (given or {}).items():
            if key == "enforcementLevel":
                continue
            if key not in self.options:
                known = ", ".join(sorted(self.options)) or "none"
                raise PolicyConfigError(
                    f"policy {self.name}: unknown option {key!r} (options: {known})"
                )
            resolved[key] = value
        return resolved

    def evaluate(self, resources: Sequence[Resource], context: Context) -> list[Violation]:
        """Run the policy over a whole stack and return every violation."""
        if self.validate_stack is not None:
            return list(self.validate_stack(resources, context))
        assert self.validate_resource is not None  # guaranteed by __post_init__
        return [
            Violation(message, resource.urn)
            for resource in resources
            for message in self.validate_resource(resource, context)
        ]


# --- property access -------------------------------------------------------------------


_MISSING: Final = object()


def get(value: Any, path: str, default: Any = None) -> Any:
    """Follow a dotted path through mappings and lists (``rules.0.expiration.days``).

    Returns ``default`` when any step is missing, and :data:`UNKNOWN` as soon as a step is
    unknown. Keys that themselves contain dots (Kubernetes labels, Kafka settings) are read
    with plain indexing on the mapping the path leads to.
    """
    current = value
    for step in path.split(".") if path else []:
        if is_unknown(current):
            return UNKNOWN
        if isinstance(current, Mapping):
            current = current.get(step, _MISSING)
        elif isinstance(current, Sequence) and not isinstance(current, str) and step.isdigit():
            index = int(step)
            current = current[index] if index < len(current) else _MISSING
        else:
            current = _MISSING
        if current is _MISSING or current is None:
            return default
    return current


def as_list(value: Any) -> list[Any]:
    """A list property as a list (absent, null or unknown: empty)."""
    if isinstance(value, Sequence) and not isinstance(value, str):
        return list(value)
    return []


def as_mapping(value: Any) -> Mapping[str, Any]:
    """A map property as a mapping (absent, null or unknown: empty)."""
    return value if isinstance(value, Mapping) else {}


def as_number(value: Any) -> float | None:
    """A numeric property (the engine sends floats; Kafka settings may be strings)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def is_true(value: Any) -> bool:
    """True only for an explicit boolean true (or the string ``"true"``)."""
    return value is True or (isinstance(value, str) and value.lower() == "true")


def of_type(resources: Iterable[Resource], *types: str) -> Iterator[Resource]:
    """The resources whose type token is one of ``types``."""
    wanted = set(types)
    return (resource for resource in resources if resource.type in wanted)


def refers_to(
    source: Resource, prop: str, value: Any, target: Resource, aliases: Iterable[Any]
) -> bool:
    """Does ``source``'s property ``prop`` (top-level name) point at ``target``?

    True when the engine recorded the dependency, or when ``value`` equals the target's
    id or one of its identifying ``aliases`` (name, ARN...). An ARN that ends in the
    target's id (``...:key/<id>``) counts as a reference to it.
    """
    if target.urn in source.dependencies.get(prop, ()):
        return True
    if not isinstance(value, str) or not value or is_unknown(value):
        return False
    candidates = {alias for alias in aliases if isinstance(alias, str) and alias}
    if target.id:
        candidates.add(target.id)
        if value.endswith(f"/{target.id}"):
            return True
    return value in candidates


def short(resource: Resource) -> str:
    """How reports name a resource: its type's last segment and its name."""
    kind = resource.type.rsplit(":", 1)[-1]
    return f"{kind} {resource.name}"
