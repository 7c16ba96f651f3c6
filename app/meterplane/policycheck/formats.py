"""Reports of a policy check: a summary for people, JSON, JUnit XML and SARIF 2.1.0 for CI.

- **text**: per stack, a verdict line and one row per violation (level, policy, resource,
  message).
- **json**: the same facts as data.
- **junit**: one ``<testsuite>`` per stack and one ``<testcase>`` per policy; a mandatory
  violation is a ``<failure>``, advisory ones are listed in ``<system-out>`` (they do not
  fail the build), a disabled policy is ``<skipped>``, an unrenderable stack an ``<error>``.
- **sarif**: one run whose rules are the pack's policies; each violation is a result at
  level ``error`` (mandatory) or ``warning`` (advisory), located in the stack's file and
  naming the resource's URN as its logical location, for GitHub code scanning.
"""

from __future__ import annotations

import hashlib
import json
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from typing import Any

from meterplane import __version__
from meterplane.policycheck.runner import Finding, StackResult
from policies.core import Level, Severity
from policies.registry import POLICIES

TOOL_NAME = "meterplane policy-check"
SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
# GitHub code scanning ranks security alerts by this score (CVSS-like, 0.0-10.0).
_SECURITY_SEVERITY = {
    Severity.LOW: "3.0",
    Severity.MEDIUM: "5.5",
    Severity.HIGH: "8.0",
    Severity.CRITICAL: "9.5",
}


def _verdict(result: StackResult) -> str:
    if result.error is not None:
        return "ERROR"
    return "FAIL" if result.mandatory else "PASS"


def _located(finding: Finding) -> str:
    """The message, prefixed with the resource unless the message already names it."""
    if finding.message.startswith(finding.resource):
        return finding.message
    return f"{finding.resource}: {finding.message}"


def render_text(results: Sequence[StackResult]) -> str:
    """The human summary: a verdict per stack, then each violation on its own line."""
    lines: list[str] = []
    for result in results:
        environment = result.environment or "unknown environment"
        if result.error is not None:
            lines.append(
                f"{result.stack} ({environment}): ERROR - could not render: {result.error}"
            )
            continue
        lines.append(
            f"{result.stack} ({environment}): {_verdict(result)} - "
            f"{len(result.mandatory)} mandatory, {len(result.advisory)} advisory violation(s); "
            f"{len(result.policies)} policies over {result.resources} resources"
        )
        lines.extend(
            f"  {finding.level.value.upper():<9}  {finding.policy:<28}  {_located(finding)}"
            for finding in result.findings
        )
    blocked = [result.stack for result in results if result.blocked]
    if not results:
        lines.append("no stack to check")
    elif blocked:
        lines.append(f"blocked: {', '.join(blocked)} (mandatory violations or render errors)")
    else:
        lines.append(f"all {len(results)} stack(s) pass")
    return "\n".join(lines) + "\n"


def _finding_json(finding: Finding) -> dict[str, Any]:
    return {
        "policy": finding.policy,
        "level": finding.level.value,
        "severity": finding.severity.value,
        "domain": finding.domain,
        "urn": finding.urn,
        "resourceType": finding.resource_type,
        "resourceName": finding.resource_name,
        "message": finding.message,
    }


def render_json(results: Sequence[StackResult]) -> str:
    """Every stack's verdict, policy levels and violations as one JSON document."""
    document = {
        "tool": {"name": TOOL_NAME, "version": __version__},
        "passed": not any(result.blocked for result in results),
        "stacks": [
            {
                "stack": result.stack,
                "environment": result.environment,
                "verdict": _verdict(result).lower(),
                "error": result.error,
                "resources": result.resources,
                "policies": {applied.spec.name: applied.level.value for applied in result.policies},
                "summary": {
                    "mandatory": len(result.mandatory),
                    "advisory": len(result.advisory),
                },
                "findings": [_finding_json(finding) for finding in result.findings],
            }
            for result in results
        ],
    }
    return json.dumps(document, indent=2) + "\n"


def _describe(findings: Sequence[Finding]) -> str:
    return "\n".join(
        f"{finding.resource} ({finding.urn}): {finding.message}" for finding in findings
    )


def render_junit(results: Sequence[StackResult]) -> str:
    """JUnit XML: a suite per stack, a case per policy; only mandatory violations fail."""
    root = ET.Element("testsuites", name=TOOL_NAME)
    total = failures = errors = 0
    for result in results:
        suite = ET.SubElement(root, "testsuite", name=result.stack)
        props = ET.SubElement(suite, "properties")
        ET.SubElement(props, "property", name="environment", value=result.environment or "")
        cases = suite_failures = suite_errors = skipped = 0
        if result.error is not None:
            case = ET.SubElement(
                suite, "testcase", name="render", classname=f"policy-check.{result.stack}"
            )
            ET.SubElement(case, "error", type="PlanError", message=result.error).text = result.error
            cases, suite_errors = 1, 1
        for applied in result.policies:
            cases += 1
            case = ET.SubElement(
                suite,
                "testcase",
                name=applied.spec.name,
                classname=f"policy-check.{result.stack}",
                time="0",
            )
            found = result.findings_of(applied.spec.name)
            if applied.level is Level.DISABLED:
                ET.SubElement(case, "skipped", message="policy disabled by pack configuration")
                skipped += 1
            elif found and applied.level is Level.MANDATORY:
                suite_failures += 1
                ET.SubElement(
                    case,
                    "failure",
                    type="mandatory",
                    message=f"{len(found)} mandatory violation(s) of {applied.spec.name}",
                ).text = _describe(found)
            elif found:
                ET.SubElement(case, "system-out").text = "advisory:\n" + _describe(found)
        suite.set("tests", str(cases))
        suite.set("failures", str(suite_failures))
        suite.set("errors", str(suite_errors))
        suite.set("skipped", str(skipped))
        suite.set("time", "0")
        total, failures, errors = total + cases, failures + suite_failures, errors + suite_errors
    root.set("tests", str(total))
    root.set("failures", str(failures))
    root.set("errors", str(errors))
    ET.indent(root)
    return ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n"


def _rule(index: int) -> dict[str, Any]:
    spec = POLICIES[index]
    return {
        "id": spec.name,
        "name": "".join(part.capitalize() for part in spec.name.split("-")),
        "shortDescription": {"text": spec.description},
        "fullDescription": {"text": f"{spec.description} ({spec.domain})"},
        "help": {"text": spec.remediation},
        "defaultConfiguration": {"level": "error"},
        "properties": {
            "tags": ["security", spec.domain, *spec.mirrors],
            "security-severity": _SECURITY_SEVERITY[spec.severity],
        },
    }


def _fingerprint(stack: str, finding: Finding) -> str:
    key = "\x1f".join((stack, finding.policy, finding.urn or "", finding.message))
    return hashlib.sha256(key.encode()).hexdigest()[:32]


def render_sarif(results: Sequence[StackResult], stacks_path: str = "stacks") -> str:
    """SARIF 2.1.0 with one run; results point at ``<stacks_path>/Pulumi.<stack>.yaml``."""
    index = {spec.name: position for position, spec in enumerate(POLICIES)}
    sarif_results: list[dict[str, Any]] = []
    notifications: list[dict[str, Any]] = []
    for result in results:
        artifact = {"uri": f"{stacks_path}/Pulumi.{result.stack}.yaml"}
        if result.error is not None:
            notifications.append(
                {
                    "level": "error",
                    "message": {
                        "text": f"stack {result.stack} could not be rendered: {result.error}"
                    },
                    "locations": [{"physicalLocation": {"artifactLocation": artifact}}],
                }
            )
        for finding in result.findings:
            location: dict[str, Any] = {
                "physicalLocation": {"artifactLocation": artifact, "region": {"startLine": 1}}
            }
            if finding.urn:
                location["logicalLocations"] = [
                    {
                        "name": finding.resource_name or finding.urn,
                        "fullyQualifiedName": finding.urn,
                        "kind": "resource",
                    }
                ]
            sarif_results.append(
                {
                    "ruleId": finding.policy,
                    "ruleIndex": index[finding.policy],
                    "level": "error" if finding.level is Level.MANDATORY else "warning",
                    "message": {"text": f"[{result.stack}] {finding.resource}: {finding.message}"},
                    "locations": [location],
                    "partialFingerprints": {
                        "meterplanePolicy/v1": _fingerprint(result.stack, finding)
                    },
                    "properties": {
                        "stack": result.stack,
                        "environment": result.environment,
                        "enforcementLevel": finding.level.value,
                        "resourceType": finding.resource_type,
                    },
                }
            )
    invocation: dict[str, Any] = {
        "executionSuccessful": not any(result.error for result in results)
    }
    if notifications:
        invocation["toolExecutionNotifications"] = notifications
    log = {
        "$schema": SARIF_SCHEMA,
        "version": "2.1.0",
        "runs": [
            {
                "tool": {
                    "driver": {
                        "name": TOOL_NAME,
                        "version": __version__,
                        "rules": [_rule(position) for position in range(len(POLICIES))],
                    }
                },
                "automationDetails": {"id": "meterplane-policy-check/"},
                "invocations": [invocation],
                "results": sarif_results,
            }
        ],
    }
    return json.dumps(log, indent=2) + "\n"


RENDERERS = {
    "text": render_text,
    "json": render_json,
    "junit": render_junit,
    "sarif": render_sarif,
}
