"""``meterplane policy-check``: the policy pack over offline-rendered stacks, for PR review.

The policies themselves live in the top-level ``policies`` package (the CrossGuard pack);
this package renders stacks the way ``meterplane plan`` does, runs those same policies at
the same levels, and writes the results as text, JSON, JUnit XML or SARIF.
"""

from meterplane.policycheck.formats import (
    RENDERERS,
    render_json,
    render_junit,
    render_sarif,
    render_text,
)
from meterplane.policycheck.runner import (
    Finding,
    Selection,
    StackResult,
    affected_stacks,
    check_rendered,
    check_resources,
    check_stack,
    check_stacks,
    to_resources,
)

__all__ = [
    "RENDERERS",
    "Finding",
    "Selection",
    "StackResult",
    "affected_stacks",
    "check_rendered",
    "check_resources",
    "check_stack",
    "check_stacks",
    "render_json",
    "render_junit",
    "render_sarif",
    "render_text",
    "to_resources",
]
