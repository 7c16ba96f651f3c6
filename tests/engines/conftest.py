"""Fixtures that start real engines: one Kafka broker per session, Flink runs on demand.

Everything is installed by ``meterplane.testing.engines`` (the Makefile's ``engines-setup``
does it up front; these fixtures repeat the idempotent checks so that a bare ``pytest``
works too) and cached under ``.cache/engines/``.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest

from meterplane.testing import engines

_names = itertools.count()


@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[engines.KafkaBroker]:
    """One single-node KRaft broker on loopback for the whole session."""
    broker = engines.KafkaBroker(tmp_path_factory.mktemp("kafka"))
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture
def topic_name(request: pytest.FixtureRequest) -> str:
    """A topic name no other test in this session uses."""
    return f"t{next(_names)}-{request.node.name[:40]}".replace("[", "-").replace("]", "")


@pytest.fixture(scope="session")
def flink_connector_jar() -> Path:
    """The Flink Kafka SQL connector jar from Maven Central (cached)."""
    return engines.ensure_flink_connector_jar()


@pytest.fixture(scope="session")
def flink_python() -> Path:
    """The interpreter of the pinned PyFlink environment (.flink-venv)."""
    return engines.ensure_flink_venv()
