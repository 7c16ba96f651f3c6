"""Frames ingest offers the aggregator from memory (``Aggregator.offer``): taken in log
order, only once durable, never past a gap, bounded in memory, and counted exactly as
frames read back from the log."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from meterplane.aggregate import aggregator as aggregator_module
from meterplane.aggregate.aggregator import Aggregator
from meterplane.core.catalog import load_catalog
from meterplane.core.settings import load_settings
from meterplane.core.timeutil import now_us
from meterplane.ingest.buffer import KIND_EVENTS, Frame
from meterplane.plane import EmbeddedPlane
from meterplane.simulate import generate
from tests.app.conftest import API_KEY

NOW = now_us()
BODIES = generate(load_catalog(), NOW, n_events=6_000, late_share=0.1).event_batches


@pytest.fixture
def plane(tmp_path: Path) -> Iterator[EmbeddedPlane]:
    """A plane whose aggregator the test steps by hand (no thread)."""
    settings = load_settings(env={}, data_dir=tmp_path / "data", api_keys=API_KEY)
    p = EmbeddedPlane(settings)
    p.aggregator.recover()
    yield p
    p.log.close()
    p.engine.close()


def _write(plane: EmbeddedPlane, body: bytes, offer: bool = True) -> Frame:
    end = plane.log.write(KIND_EVENTS, NOW, body)
    frame = Frame.ending_at(end, KIND_EVENTS, NOW, body)
    if offer:
        plane.aggregator.offer(frame)
    return frame


def _counted_from_the_log_alone(bodies: list[bytes], tmp_path: Path) -> list[Any]:
    agg = Aggregator(None, None, load_catalog(), tmp_path / "ref")  # type: ignore[arg-type]
    for pos, body in enumerate(bodies):
        agg._apply(Frame(pos, pos + 1, KIND_EVENTS, NOW, body))
    return sorted(agg.book.items())


def _no_log_reads(plane: EmbeddedPlane, monkeypatch: pytest.MonkeyPatch) -> None:
    def read(*_: Any, **__: Any) -> Iterator[Frame]:
        raise AssertionError("read the log for a frame offered in memory")

    monkeypatch.setattr(plane.log, "read", read)


def test_offered_frames_are_counted_from_memory_as_the_log_would_count_them(
    plane: EmbeddedPlane, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    frames = [_write(plane, body) for body in BODIES]
    plane.log.wait_durable(frames[-1].end)
    _no_log_reads(plane, monkeypatch)
    assert plane.aggregator.step(max_frames=4) == 4  # a step takes no more than asked
    while plane.aggregator.step():
        pass
    assert plane.aggregator.pos == frames[-1].end
    assert sorted(plane.aggregator.book.items()) == _counted_from_the_log_alone(BODIES, tmp_path)


def test_a_frame_not_offered_is_read_from_the_log_and_the_rest_still_from_memory(
    plane: EmbeddedPlane, tmp_path: Path
) -> None:
    frames = [_write(plane, body, offer=i != 2) for i, body in enumerate(BODIES)]
    plane.log.wait_durable(frames[-1].end)
    reads: list[int] = []
    real_read = plane.log.read

    def read(pos: int, *args: Any) -> Iterator[Frame]:
        reads.append(pos)
        return real_read(pos, *args)

    plane.log.read = read  # type: ignore[method-assign]
    while plane.aggregator.step():
        pass
    # frames 0 and 1 from memory; 2 is missing there: the log from 2 on
    assert reads[0] == frames[2].pos
    assert plane.aggregator.pos == frames[-1].end
    assert sorted(plane.aggregator.book.items()) == _counted_from_the_log_alone(BODIES, tmp_path)


def test_nothing_offered_is_applied_before_it_is_durable(plane: EmbeddedPlane) -> None:
    first = _write(plane, BODIES[0])
    plane.log.wait_durable(first.end)
    # a frame offered beyond what the log holds durably: it must wait for its fsync
    ahead = Frame(first.end, first.end + 10**6, KIND_EVENTS, NOW, BODIES[1])
    plane.aggregator.offer(ahead)
    assert plane.aggregator.step() == 1
    assert plane.aggregator.step() == 0
    assert plane.aggregator.pos == first.end


def test_a_frame_offered_out_of_order_is_not_kept(plane: EmbeddedPlane) -> None:
    first = _write(plane, BODIES[0])
    plane.aggregator.offer(Frame(first.end + 5, first.end + 50, KIND_EVENTS, NOW, b"{}"))
    assert [f.pos for f in plane.aggregator._offered] == [first.pos]


def test_offered_bodies_stay_within_their_bound(
    plane: EmbeddedPlane, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(aggregator_module, "OFFERED_BYTES", 3 * len(BODIES[0]))
    for body in BODIES:  # nobody takes them meanwhile
        _write(plane, body)
    held = plane.aggregator._offered
    assert 1 <= len(held) < len(BODIES)
    assert held[-1].end - held[0].pos <= 3 * len(BODIES[0])
