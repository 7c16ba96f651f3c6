"""``build_native`` compiles the core that ``make setup`` and the app image use."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from meterplane.aggregate import build_native


def test_the_module_compiles_a_core_that_loads_and_scans(tmp_path: Path) -> None:
    out = tmp_path / "_native.so"
    assert build_native.main(["--out", str(out)]) == 0
    spec = importlib.util.spec_from_file_location("_native", out)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert callable(module.scan_events)


def test_the_flags_keep_sums_exact_and_warnings_fatal() -> None:
    cmd = build_native.command(Path("x.so"), cc="gcc")
    assert cmd[0] == "gcc"
    assert "-ffp-contract=off" in cmd  # no fused multiply-add: sums round as Python's do
    assert "-Werror" in cmd
    assert cmd[-3:] == [str(build_native.SOURCE), "-o", "x.so"]
