"""Wire models of the HTTP API (DESIGN.md 3.2) and their validation.

Decoding uses msgspec: the types below carry the length limits, so one C-speed pass
checks a 1,000-event batch. Checks msgspec cannot express (offsets on timestamps, the
accepted time range, finite numbers, dimension sizes) run in ``validate_*`` afterwards.
A batch with any invalid item is rejected whole, with every item's problems listed.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec

from meterplane.core.errors import InvalidBatch, ItemError, MalformedBody, TooLarge
from meterplane.core.timeutil import US_PER_S, from_us

MAX_BATCH = 1000
Id = Annotated[str, msgspec.Meta(min_length=1, max_length=255)]
MAX_DIMENSIONS = 64
MAX_DIMENSION_KEY = 128
MAX_DIMENSION_VALUE = 1024
# Numbers within the int64 range, floats too: a period's sum of them cannot leave the float
# range (it would take about 10**289 of them), which the counters' exact sums and the
# Float64 ``value`` column need; two values near 1.8e308 used to add up to infinity.
MAX_NUMBER = 2**63
Int = Annotated[int, msgspec.Meta(ge=-MAX_NUMBER, le=MAX_NUMBER - 1)]
Float = Annotated[float, msgspec.Meta(ge=-float(MAX_NUMBER), le=float(MAX_NUMBER))]
DimValue = Annotated[str, msgspec.Meta(max_length=MAX_DIMENSION_VALUE)] | Int | Float | bool
# Limits checked in C while decoding; a non-finite number cannot be written in JSON, and
# msgspec refuses literals that overflow to infinity ("Number out of range").
Dimensions = Annotated[
    dict[Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_DIMENSION_KEY)], DimValue],
    msgspec.Meta(max_length=MAX_DIMENSIONS),
]


# gc=False on the item types: an item holds only strings, numbers, a datetime and a dict of
# scalars, so it can never be part of a reference cycle. Untracked, the batches that wait
# between ingest and the aggregator cost the cyclic GC nothing; tracked, its collections
# took about a sixth of ``serve``'s time under ingest load (timed with ``gc.callbacks``).
class Event(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True, gc=False):
    """One usage event (DESIGN.md 3.2)."""

    customerId: Id  # noqa: N815 - wire names are the public API's
    eventName: Id  # noqa: N815
    idempotencyKey: Id  # noqa: N815
    timestamp: datetime | None = None
    dimensions: Dimensions = {}
    resourceId: Id | None = None  # noqa: N815


class Usage(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True, gc=False):
    """One usage report for a feature without a meter (DESIGN.md 3.2)."""

    customerId: Id  # noqa: N815
    featureId: Id  # noqa: N815
    value: Float | Int
    updateBehavior: Literal["DELTA", "SET"] = "DELTA"  # noqa: N815
    timestamp: datetime | None = None
    idempotencyKey: Id | None = None  # noqa: N815
    resourceId: Id | None = None  # noqa: N815
    dimensions: Dimensions = {}


class EventBatch(msgspec.Struct, forbid_unknown_fields=True):
    """Body of ``POST /api/v1/events``."""

    events: list[Event]


class UsageBatch(msgspec.Struct, forbid_unknown_fields=True):
    """Body of ``POST /api/v1/usage``."""

    usages: list[Usage]


class _RawEvents(msgspec.Struct, forbid_unknown_fields=True):
    events: list[msgspec.Raw]


class _RawUsages(msgspec.Struct, forbid_unknown_fields=True):
    usages: list[msgspec.Raw]


class TimeWindow(msgspec.Struct, frozen=True):
    """The accepted range of event time relative to the time of receipt."""

    lateness_us: int = 35 * 86_400 * US_PER_S
    ahead_us: int = 5 * 60 * US_PER_S

    def bounds(self, received_us: int) -> tuple[datetime, datetime]:
        """The earliest and latest accepted instants for a batch received at ``received_us``."""
        return from_us(received_us - self.lateness_us), from_us(received_us + self.ahead_us)


_UNKNOWN = re.compile(r"Object contains unknown field `([^`]*)`")
_MISSING = re.compile(r"Object missing required field `([^`]*)`")
_PATH = re.compile(r" - at (?P<key>`key` in )?`\$(?P<path>[^`]*)`$")


def _split_msgspec_error(err: Exception) -> tuple[str, str]:
    """msgspec says "Expected `str`, got `int` - at `$.customerId`": return (field, message).
    A field that is unknown or missing is named as the field itself."""
    text = str(err)
    m = _PATH.search(text)
    path, message = ("", text) if not m else (m.group("path").lstrip("."), text[: m.start()])
    if m and m.group("key"):
        message = f"key: {message}"
    for pattern, what in ((_UNKNOWN, "unknown field"), (_MISSING, "missing required field")):
        named = pattern.match(message)
        if named:
            return f"{path}.{named.group(1)}".lstrip("."), what
    return path, message


def _decode_body(body: bytes, raw_type: type[Any]) -> Any:
    try:
        return msgspec.json.decode(body, type=raw_type)
    except msgspec.ValidationError as err:
        # msgspec checks types as it parses, so ``[`` or ``{"events": 5`` fail on a type
        # before the end shows they are not JSON at all: a body that is not JSON is a 400.
        _check_json(body)
        field, message = _split_msgspec_error(err)
        raise InvalidBatch([ItemError(None, field or "body", message)]) from err
    except (msgspec.DecodeError, UnicodeDecodeError) as err:
        raise MalformedBody(f"body is not valid UTF-8 JSON: {err}") from err


def _check_json(body: bytes) -> None:
    """Raise ``MalformedBody`` unless ``body`` is well-formed UTF-8 JSON."""
    try:
        msgspec.json.decode(body)
    except (msgspec.DecodeError, UnicodeDecodeError) as err:
        raise MalformedBody(f"body is not valid UTF-8 JSON: {err}") from err


class _RawDimensions(msgspec.Struct):
    """An item's dimensions, each value left undecoded (to find the one that fails)."""

    dimensions: dict[str, msgspec.Raw] = {}


def _dimension_key(raw: msgspec.Raw) -> str | None:
    """msgspec says ``dimensions[...]`` for a bad value: find which key it was."""
    try:
        dims = msgspec.json.decode(raw, type=_RawDimensions).dimensions
    except msgspec.DecodeError:
        return None
    for key, value_raw in dims.items():
        try:
            value = msgspec.json.decode(value_raw)
        except msgspec.DecodeError:  # a number no float holds (1e400)
            return key
        ok = (
            (isinstance(value, str) and len(value) <= MAX_DIMENSION_VALUE)
            or isinstance(value, bool)
            or (isinstance(value, int) and -MAX_NUMBER <= value < MAX_NUMBER)
            or (isinstance(value, float) and abs(value) <= MAX_NUMBER)
        )
        if not ok:
            return key
    return None


def _item_errors(
    raw_items: list[msgspec.Raw],
    item_type: type[Any],
    semantic: Any,
) -> list[ItemError]:
    """Decode each item alone so every bad item is reported, not just the first; items that
    decode are put through the same semantic checks as on the fast path."""
    errors: list[ItemError] = []
    for i, raw in enumerate(raw_items):
        try:
            item = msgspec.json.decode(raw, type=item_type)
        except msgspec.ValidationError as err:
            field, message = _split_msgspec_error(err)
            if field.startswith("dimensions[...]"):
                key = _dimension_key(raw)
                if key is not None:
                    field = f"dimensions.{key}"
            errors.append(ItemError(i, field or "item", message))
        else:
            semantic(i, item, errors)
    return errors


def _check_count(n: int, what: str) -> None:
    if n > MAX_BATCH:
        raise TooLarge(f"{n} {what} in one request; at most {MAX_BATCH} are accepted")


def _check_time(
    i: int,
    ts: datetime | None,
    bounds: tuple[datetime, datetime],
    window: TimeWindow,
    errors: list[ItemError],
) -> None:
    if ts is None:
        return
    if ts.tzinfo is None:
        errors.append(ItemError(i, "timestamp", "RFC 3339 timestamp must carry an offset"))
    elif ts < bounds[0]:
        days = window.lateness_us // (86_400 * US_PER_S)
        errors.append(ItemError(i, "timestamp", f"older than the lateness window ({days} days)"))
    elif ts > bounds[1]:
        errors.append(
            ItemError(i, "timestamp", f"more than {window.ahead_us // US_PER_S} s in the future")
        )


def _decode_batch(
    body: bytes,
    batch_type: type[Any],
    raw_type: type[Any],
    item_type: type[Any],
    field: str,
    received_us: int,
    window: TimeWindow,
) -> list[Any]:
    """Decode a batch in one C pass; on a type error, decode item by item to name them all.
    Then the checks msgspec cannot express. JSON cannot write NaN or infinity, and msgspec
    refuses number literals that overflow, so every number that gets here is finite."""
    bounds = window.bounds(received_us)

    def semantic(i: int, item: Any, errors: list[ItemError]) -> None:
        _check_time(i, item.timestamp, bounds, window, errors)

    try:
        items: list[Any] = getattr(msgspec.json.decode(body, type=batch_type), field)
    except msgspec.ValidationError:
        # The raw types forbid unknown fields too, so what failed the whole batch fails
        # here or in an item: a 422 always names something.
        raw = getattr(_decode_body(body, raw_type), field)
        _check_count(len(raw), field)
        raise InvalidBatch(_item_errors(raw, item_type, semantic)) from None
    except (msgspec.DecodeError, UnicodeDecodeError) as err:
        raise MalformedBody(f"body is not valid UTF-8 JSON: {err}") from err
    _check_count(len(items), field)
    if not items:
        raise InvalidBatch([ItemError(None, field, f"a batch needs 1 to 1,000 {field}")])
    errors: list[ItemError] = []
    for i, item in enumerate(items):
        semantic(i, item, errors)
    if errors:
        raise InvalidBatch(errors)
    return items


def decode_events(body: bytes, received_us: int, window: TimeWindow) -> list[Event]:
    """Decode and validate an events batch (``InvalidBatch``, ``TooLarge``, ``MalformedBody``)."""
    return _decode_batch(body, EventBatch, _RawEvents, Event, "events", received_us, window)


def decode_usages(body: bytes, received_us: int, window: TimeWindow) -> list[Usage]:
    """Decode and validate a usage batch (the same rules as events)."""
    return _decode_batch(body, UsageBatch, _RawUsages, Usage, "usages", received_us, window)
