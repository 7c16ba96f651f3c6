"""Render time of ``meterplane plan`` for every stack in ``stacks/`` (budget: 10 s each).

Each render is the real command, ``meterplane plan STACK --json``, in a fresh process:
the infra program under Pulumi mocks, no credentials, no network. ``--quick`` renders each stack
once; the full run renders each three times and reports the median and the worst. The
last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

from meterplane.plan import list_stacks

BUDGET_S = 10.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="one render per stack")
    parser.add_argument("--repeat", type=int, default=3, help="renders per stack (full run)")
    args = parser.parse_args()
    repeat = 1 if args.quick else max(1, args.repeat)
    result: dict[str, object] = {"bench": "plan", "budget_s": BUDGET_S, "repeat": repeat}
    per_stack: dict[str, dict[str, float | int]] = {}
    # Offline means offline: no engine, no cloud credentials reach the command.
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PULUMI_", "AWS_", "GOOGLE_", "ARM_", "AZURE_"))
    }
    for stack in list_stacks():
        times = []
        resources = 0
        for _ in range(repeat):
            started = time.perf_counter()
            done = subprocess.run(
                [sys.executable, "-m", "meterplane", "plan", stack, "--json"],
                capture_output=True,
                text=True,
                env=env,
                timeout=300,
                check=True,
            )
            times.append(time.perf_counter() - started)
            resources = len(json.loads(done.stdout)["resources"])
        per_stack[stack] = {
            "median_s": round(statistics.median(times), 2),
            "max_s": round(max(times), 2),
            "resources": resources,
        }
        median, worst_here = statistics.median(times), max(times)
        print(f"{stack}: {resources} resources, median {median:.2f} s, max {worst_here:.2f} s")
    worst = max(s["max_s"] for s in per_stack.values())
    result.update(stacks=per_stack, worst_s=worst, within_budget=worst < BUDGET_S)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
