"""Flags shared by subcommands, and the one-line failure on a bad setting."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable
from pathlib import Path

from meterplane.core.errors import ConfigError
from meterplane.core.settings import Settings, load_settings


def add_data_dir(parser: argparse.ArgumentParser) -> None:
    """``--data-dir`` (default ``METERPLANE_DATA_DIR``)."""
    parser.add_argument(
        "--data-dir", type=Path, help="local data directory (default: METERPLANE_DATA_DIR)"
    )


def add_http(parser: argparse.ArgumentParser) -> None:
    """``--host``/``--port`` (defaults from ``METERPLANE_HTTP_HOST``/``_PORT``)."""
    parser.add_argument("--host", dest="http_host", help="bind address (METERPLANE_HTTP_HOST)")
    parser.add_argument(
        "--port", dest="http_port", type=int, help="HTTP port (METERPLANE_HTTP_PORT)"
    )


def settings_from(args: argparse.Namespace, **extra: object) -> Settings:
    """Settings from the environment with the given flags on top."""
    flags = {k: v for k, v in vars(args).items() if k in Settings.model_fields and v is not None}
    return load_settings(**{**flags, **extra})


def guarded(fn: Callable[[], int]) -> int:
    """Run ``fn``; a ``ConfigError`` becomes one line on stderr and exit status 2."""
    try:
        return fn()
    except ConfigError as err:
        print(f"meterplane: {err}", file=sys.stderr)
        return 2


def setup_logging(level: str) -> None:
    """One line per record, to stderr."""
    logging.basicConfig(
        level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
