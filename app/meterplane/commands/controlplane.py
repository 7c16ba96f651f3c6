"""``meterplane control-plane``: the reference control plane (demo, local runs, tests).

Not part of a data plane: it stands in for the vendor's side of the sync protocol
(``docs/control-plane-openapi.yaml``) and keeps its state in ``--data-dir``.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import uvicorn

from meterplane.commands._common import guarded, setup_logging
from meterplane.controlplane.server import create_control_plane
from meterplane.controlplane.store import ControlPlaneStore
from meterplane.core.errors import ConfigError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=Path(os.environ.get("METERPLANE_CONTROL_PLANE_DATA_DIR", "./control-plane-data")),
        help="where the control plane keeps its state (METERPLANE_CONTROL_PLANE_DATA_DIR)",
    )
    parser.add_argument("--host", default="127.0.0.1", help="bind address")
    parser.add_argument("--port", type=int, default=8090, help="HTTP port")
    parser.add_argument(
        "--environment",
        action="append",
        default=[],
        metavar="ID=TOKEN",
        help="create or update an environment and its bearer credential (repeatable)",
    )
    parser.add_argument(
        "--admin-token",
        default=os.environ.get("METERPLANE_CONTROL_PLANE_ADMIN_TOKEN"),
        help="credential of the admin API (METERPLANE_CONTROL_PLANE_ADMIN_TOKEN)",
    )
    parser.add_argument("--log-level", default="INFO")


def _environments(specs: list[str]) -> list[tuple[str, str]]:
    out = []
    for spec in specs:
        env, sep, token = spec.partition("=")
        if not sep or not env or len(token) < 16:
            raise ConfigError(f"--environment: expected ID=TOKEN with a 16+ char token: {spec!r}")
        out.append((env, token))
    return out


def run(args: argparse.Namespace) -> int:
    def go() -> int:
        if not args.admin_token or len(args.admin_token) < 16:
            raise ConfigError("METERPLANE_CONTROL_PLANE_ADMIN_TOKEN: required (16+ characters)")
        envs = _environments(args.environment)
        setup_logging(args.log_level)
        store = ControlPlaneStore(args.data_dir / "control-plane.sqlite")
        try:
            for env, token in envs:
                store.set_environment(env, token)
            uvicorn.run(
                create_control_plane(store, args.admin_token),
                host=args.host,
                port=args.port,
                log_level=args.log_level.lower(),
                access_log=False,
                timeout_graceful_shutdown=1,
            )
        finally:
            store.close()
        return 0

    return guarded(go)
