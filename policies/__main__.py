"""CrossGuard entry point: ``pulumi preview --policy-pack policies``.

Only builds the PolicyPack (its constructor serves the engine over gRPC and never
returns); the policies live in the sibling modules as pure functions.
"""

from pulumi_policy import EnforcementLevel, PolicyPack

from policies.crossguard import StackSettings, build_policies
from policies.registry import PACK_DESCRIPTION, PACK_NAME

PolicyPack(
    name=PACK_NAME,
    description=PACK_DESCRIPTION,
    policies=list(build_policies(StackSettings.from_environment())),
    enforcement_level=EnforcementLevel.MANDATORY,
)
