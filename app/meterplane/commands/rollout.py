"""``meterplane rollout plan|run``: upgrade waves over customer stacks.

``plan`` prints the waves (``--json``: ``{"waves": [{"ring": N, "name", "stacks"}...]}``).
``run`` applies each stack with the Pulumi Automation API, waits on the health gate after
every stack and stops the line on the first failure, then prints a summary table (or the
report as JSON). ``--dry-run`` renders every stack offline instead and needs no cloud,
no Pulumi CLI and no credentials; ``--preview-only`` runs ``pulumi preview``.

Exit status: 0 every stack healthy, 1 the rollout stopped, 2 bad flags or stack files.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from meterplane.rollout import (
    RINGS,
    AutomationStackRunner,
    GateSettings,
    HealthGate,
    HttpHealthProbe,
    KafkaConsumerLag,
    OfflineStackRunner,
    Rollout,
    RolloutError,
    SkippedGate,
    StackRunner,
    Thresholds,
    Wave,
    plan_waves,
)
from meterplane.rollout.health import Gate, load_endpoints


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``plan`` and ``run`` with their flags."""
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    plan = sub.add_parser("plan", help="print the waves a rollout would go out in")
    run = sub.add_parser("run", help="apply the waves, gated, stopping on the first failure")
    for p in (plan, run):
        p.add_argument("stacks", nargs="*", metavar="STACK", help="stacks (default: all)")
        p.add_argument("--json", action="store_true", help="print JSON instead of text")
        p.add_argument("--stacks-dir", type=Path, help="directory of stack files")
        p.add_argument(
            "--ring", action="append", default=[], help=f"only these rings ({', '.join(RINGS)})"
        )
    run.add_argument("--dry-run", action="store_true", help="render offline; no cloud, no gate")
    run.add_argument("--preview-only", action="store_true", help="pulumi preview, not up")
    run.add_argument("--work-dir", type=Path, help="Pulumi project directory (default: repo)")
    run.add_argument("--pulumi-root", type=Path, help="directory whose bin/pulumi to use")
    run.add_argument("--policy-pack", action="append", default=[], help="policy pack dir(s)")
    gate = run.add_argument_group("health gate")
    gate.add_argument(
        "--health-url",
        action="append",
        default=[],
        metavar="STACK=URL",
        help="ingest base URL of a stack (repeat; or METERPLANE_ROLLOUT_HEALTH_URLS as JSON)",
    )
    gate.add_argument(
        "--kafka-bootstrap",
        action="append",
        default=[],
        metavar="STACK=SERVERS",
        help="lag from the consumer group's Kafka lag (production; repeat; or "
        "METERPLANE_ROLLOUT_KAFKA_BOOTSTRAPS as JSON)",
    )
    gate.add_argument("--consumer-group", default="meterplane-aggregate")
    gate.add_argument("--lag-topic", default="events")
    gate.add_argument("--gate-timeout", type=float, default=600.0, help="seconds (600)")
    gate.add_argument("--gate-interval", type=float, default=10.0, help="seconds (10)")
    gate.add_argument("--gate-soak", type=float, default=60.0, help="seconds healthy (60)")
    gate.add_argument("--max-error-rate", type=float, default=0.01, help="fraction (0.01)")
    gate.add_argument("--max-lag", type=float, default=64 * 1024 * 1024, help="bytes/records")


def _select(waves: list[Wave], rings: list[str]) -> list[Wave]:
    if not rings:
        return waves
    unknown = sorted(set(rings) - set(RINGS))
    if unknown:
        raise RolloutError(f"--ring: unknown ring(s) {', '.join(unknown)} ({', '.join(RINGS)})")
    return [w for w in waves if w.name in rings]


def _plan(args: argparse.Namespace) -> list[Wave]:
    return _select(plan_waves(args.stacks, args.stacks_dir), args.ring)


def _print_plan(waves: list[Wave], as_json: bool) -> None:
    if as_json:
        print(json.dumps({"waves": [w.to_json() for w in waves]}, indent=2))
        return
    for number, wave in enumerate(waves, start=1):
        stacks = ", ".join(f"{s.stack} ({s.version})" for s in wave.stacks)
        print(f"wave {number}: ring {wave.ring} {wave.name}: {stacks}")


def _json_mapping(variable: str) -> dict[str, str]:
    raw = os.environ.get(variable)
    if not raw:
        return {}
    try:
        loaded = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise RolloutError(f"{variable}: not JSON: {exc}") from None
    if not isinstance(loaded, dict):
        raise RolloutError(f"{variable}: must be a JSON object mapping stack to value")
    return {str(k): str(v) for k, v in loaded.items()}


def _pairs(flag: str, pairs: list[str]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        stack, sep, value = pair.partition("=")
        if not sep or not stack or not value:
            raise RolloutError(f"{flag}: expected STACK=VALUE, got {pair!r}")
        out[stack] = value
    return out


def _gate(args: argparse.Namespace, waves: list[Wave]) -> Gate:
    if args.dry_run:
        return SkippedGate("skipped (dry run)")
    if args.preview_only:
        return SkippedGate("skipped (preview only)")
    endpoints = _json_mapping("METERPLANE_ROLLOUT_HEALTH_URLS")
    endpoints.update(_pairs("--health-url", args.health_url))
    endpoints = load_endpoints(f"{k}={v}" for k, v in endpoints.items())  # validates URLs
    stacks = [s.stack for w in waves for s in w.stacks]
    # Refuse before touching anything: a stack without a gate would wait out the timeout.
    missing = [s for s in stacks if s not in endpoints]
    if missing:
        raise RolloutError(
            f"no health URL for {', '.join(missing)} "
            "(--health-url STACK=URL or METERPLANE_ROLLOUT_HEALTH_URLS)"
        )
    lag = None
    servers = _json_mapping("METERPLANE_ROLLOUT_KAFKA_BOOTSTRAPS")
    servers.update(_pairs("--kafka-bootstrap", args.kafka_bootstrap))
    if servers:
        lag = KafkaConsumerLag(servers, args.consumer_group, args.lag_topic)
    return HealthGate(
        HttpHealthProbe(endpoints, lag_source=lag),
        Thresholds(max_error_rate=args.max_error_rate, max_lag=args.max_lag),
        GateSettings(args.gate_timeout, args.gate_interval, args.gate_soak),
    )


def _runner(args: argparse.Namespace) -> StackRunner:
    if args.dry_run:
        return OfflineStackRunner(args.stacks_dir)
    from meterplane.plan.stackfiles import project_dir  # noqa: PLC0415

    work_dir = args.work_dir or project_dir()
    if work_dir is None:
        raise RolloutError("no Pulumi project found: pass --work-dir")
    return AutomationStackRunner(
        work_dir=work_dir,
        preview_only=args.preview_only,
        pulumi_root=args.pulumi_root,
        policy_packs=args.policy_pack,
        on_output=None if args.json else lambda line: print(line, file=sys.stderr),
    )


def run(args: argparse.Namespace) -> int:
    """Dispatch ``plan``/``run``; see the module docstring for the exit status."""
    try:
        waves = _plan(args)
        if args.action == "plan":
            _print_plan(waves, args.json)
            return 0
        if args.dry_run and args.preview_only:
            raise RolloutError("--dry-run and --preview-only exclude each other")
        rollout = Rollout(
            _runner(args),
            _gate(args, waves),
            on_event=lambda msg: print(msg, file=sys.stderr),
        )
        report = rollout.run(waves)
    except RolloutError as exc:
        print(f"meterplane rollout: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps({**report.to_json(), "waves": [w.to_json() for w in waves]}, indent=2))
    else:
        print(report.table())
    return 0 if report.ok else 1
