"""Fixtures of the archive tests: one seeded data directory per session (copied per test)
and the object-store peers, each started once per session on a free loopback port.

The peers are installed by ``meterplane.testing.objectstores`` on first use (npm for
Azurite, the Go module proxy for fake-gcs-server) and cached under ``.cache/objectstores``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from meterplane.testing.objectstores import Azurite, FakeGcsServer, MotoServer
from tests.archive.support import Seeded, copy_seeded, seed


@pytest.fixture(scope="session")
def seeded_template(tmp_path_factory: pytest.TempPathFactory) -> Seeded:
    """25 days of events (two month partitions) counted by the embedded plane (never modified)."""
    return seed(tmp_path_factory.mktemp("seeded") / "data")


@pytest.fixture
def seeded(seeded_template: Seeded, tmp_path: Path) -> Seeded:
    """A private copy of the seeded data directory."""
    return copy_seeded(seeded_template, tmp_path / "data")


@pytest.fixture(scope="session")
def moto_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoServer]:
    """moto's server (S3 + KMS)."""
    with MotoServer(tmp_path_factory.mktemp("moto")) as peer:
        yield peer  # type: ignore[misc]


@pytest.fixture(scope="session")
def azurite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Azurite]:
    """Azurite's blob service."""
    with Azurite(tmp_path_factory.mktemp("azurite")) as peer:
        yield peer  # type: ignore[misc]


@pytest.fixture(scope="session")
def fake_gcs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FakeGcsServer]:
    """fake-gcs-server."""
    with FakeGcsServer(tmp_path_factory.mktemp("fake-gcs")) as peer:
        yield peer  # type: ignore[misc]
