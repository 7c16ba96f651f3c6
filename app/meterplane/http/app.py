"""The HTTP API (DESIGN.md 3.2): FastAPI routes, msgspec on the hot paths.

Ingest handlers read the raw body under a size limit, validate the whole batch (all or
nothing) and await the buffer's durable append before answering 202. Checks read memory
only. Request and response schemas in ``/openapi.json`` come from the same msgspec types
that decode and encode the traffic.
"""

from __future__ import annotations

import hmac
import math
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Annotated, Any
from urllib.parse import parse_qsl

import msgspec
from fastapi import Depends, FastAPI, Header, Query, Request
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.requests import ClientDisconnect
from starlette.responses import Response

from meterplane import __version__
from meterplane.core import metrics
from meterplane.core.errors import TooLarge, Unauthorized
from meterplane.core.model import EventBatch as _EventBatch
from meterplane.core.model import TimeWindow, UsageBatch, decode_events, decode_usages
from meterplane.core.timeutil import US_PER_S, now_us
from meterplane.entitlements.decide import Decider, Decision, EntitlementList
from meterplane.http import errors
from meterplane.ingest.buffer import KIND_EVENTS, KIND_USAGE
from meterplane.plane import DurableBuffer

JSON = "application/json"
ApiKey = Annotated[str | None, Header(alias="X-API-KEY")]


class Accepted(msgspec.Struct):
    """Body of a 202: how many items were made durable."""

    accepted: int


class ErrorDetail(msgspec.Struct):
    """One item's problem."""

    index: int | None
    field: str
    message: str


class ErrorInfo(msgspec.Struct):
    """The error object."""

    code: str
    message: str
    details: list[ErrorDetail]


class ErrorBody(msgspec.Struct):
    """Every non-2xx body."""

    error: ErrorInfo


class Health(msgspec.Struct):
    """Body of /livez and /readyz."""

    status: str


_SCHEMAS, _COMPONENTS = msgspec.json.schema_components(
    [_EventBatch, UsageBatch, Accepted, Decision, EntitlementList, ErrorBody, Health],
    ref_template="#/components/schemas/{name}",
)


def _ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


def _responses(ok: int, ok_schema: str, *errors_: int) -> dict[int | str, dict[str, Any]]:
    out: dict[int | str, dict[str, Any]] = {
        ok: {"description": "OK", "content": {JSON: {"schema": _ref(ok_schema)}}}
    }
    for status in errors_:
        out[status] = {"description": "error", "content": {JSON: {"schema": _ref("ErrorBody")}}}
    return out


def _body(name: str) -> dict[str, Any]:
    return {"requestBody": {"required": True, "content": {JSON: {"schema": _ref(name)}}}}


def _json(obj: Any, status: int = 200) -> Response:
    return Response(msgspec.json.encode(obj), status, media_type=JSON)


class Auth:
    """``X-API-KEY`` check: compared against every key in constant time."""

    def __init__(self, keys: tuple[str, ...]) -> None:
        self._keys: list[bytes] = []
        self.required = False
        self.generation = 0  # bumped on every change: what was accepted before may not be
        self.set_keys(keys)

    def set_keys(self, keys: tuple[str, ...]) -> None:
        """Replace the accepted keys (the sync agent applies rotations from governance)."""
        self._keys = [k.encode() for k in keys]
        self.required = bool(keys)
        self.generation += 1

    def __call__(self, given: str | None) -> None:
        if not self.required:
            return
        if not given:
            raise Unauthorized("missing X-API-KEY header")
        if not self.accepts(given.encode()):
            raise Unauthorized("unknown API key")

    def accepts(self, given: bytes | None) -> bool:
        """Whether a raw header value is an accepted key (True when none is required)."""
        if not self.required:
            return True
        ok = False
        for k in self._keys:  # no early exit: time does not depend on which key matched
            ok |= hmac.compare_digest(given or b"", k)
        return ok and bool(given)


async def _read_body(declared: str | None, pieces: AsyncIterator[bytes], limit: int) -> bytes:
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise TooLarge(f"body of {declared} bytes; the limit is {limit}")
    chunks = []
    size = 0
    async for chunk in pieces:
        size += len(chunk)
        if size > limit:
            raise TooLarge(f"body over the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def _body_pieces(receive: Any) -> AsyncIterator[bytes]:
    """An ASGI request's body, piece by piece (``Request.stream`` without the Request)."""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect
        yield message.get("body", b"")
        if not message.get("more_body", False):
            return


class Ingest:
    """``POST /api/v1/events`` and ``/api/v1/usage``: one batch made durable, all or nothing.

    Reads the raw body under the size limit, validates the whole batch and awaits the
    buffer's durable append; returns the 202's body, or raises what ``errors`` maps to the
    4xx/503 answer. Shared by the FastAPI routes and ``FastCheck``'s fast path.
    """

    def __init__(
        self, buffer: DurableBuffer, auth: Auth, window: TimeWindow, max_body_bytes: int
    ) -> None:
        self.buffer = buffer
        self.auth = auth
        self.window = window
        self.max_body_bytes = max_body_bytes

    async def __call__(
        self, kind: int, key: str | None, declared: str | None, pieces: AsyncIterator[bytes]
    ) -> bytes:
        self.auth(key)
        body = await _read_body(declared, pieces, self.max_body_bytes)
        received = now_us()
        items: list[Any]
        if kind == KIND_EVENTS:
            items = decode_events(body, received, self.window)
        else:
            items = decode_usages(body, received, self.window)
        n = len(items)
        # Nothing here needs the items past the buffer's taking them: let them go then,
        # warm, not after the fsync, by when the batches decoded meanwhile have pushed them
        # out of the cache (freeing them cold took as long as decoding them).
        durable = self.buffer.append(kind, received, body, items)
        del items
        await durable
        metrics.ITEMS_ACCEPTED.labels("event" if kind == KIND_EVENTS else "usage").inc(n)
        return _encode(Accepted(n))


_INGEST_PATHS = {"/api/v1/events": KIND_EVENTS, "/api/v1/usage": KIND_USAGE}
# A scope extension ``http/server.py`` gives POSTs: its "respond"(status, JSON body) answers
# in one write and returns True, or returns False and leaves the answer to ``send``.
RESPOND = "meterplane.respond"
_CHECK_PREFIX = "/api/v1/customers/"
_CHECK_SUFFIX = "/entitlements/check"
_JSON_HEADERS = [(b"content-type", b"application/json")]
_DECISIONS = metrics.CHECKS
_encode = msgspec.json.Encoder().encode


def _query(query: bytes) -> dict[str, str]:
    """A query string's parameters (the last of a repeated name wins, as in the route)."""
    text = query.decode("latin-1")
    if "%" in text or "+" in text or not text.isascii():
        return dict(parse_qsl(text, keep_blank_values=True))
    return {name: value for name, _, value in (p.partition("=") for p in text.split("&") if p)}


# What a well-formed, authorized check asks: (customer, feature, requested usage, resource).
CheckRoute = tuple[str, str, float | int, str | None]
_MAX_ROUTES = 10_000


class FastCheck:
    """ASGI fast path for ``GET .../entitlements/check``, the hottest request.

    It answers only well-formed, authorized requests; anything else (a bad key, a missing
    or invalid parameter) goes on to the FastAPI route, so every error keeps one shape
    and one place. The decision and its encoding are the same objects either way.

    ``remember``/``recall`` keep what the exact bytes of a whole request were found to ask
    (its route), so a client repeating a check is not parsed again; the decision itself is
    made afresh every time. Routes are forgotten when the accepted keys change.

    Ingest batches (``POST /api/v1/events`` and ``/api/v1/usage``) take a fast path too:
    ``Ingest``, which the FastAPI routes call as well, with its errors answered by the
    handlers ``errors.install`` gives the app.
    """

    def __init__(self, app: Any, decider: Decider, auth: Auth, ingest: Ingest) -> None:
        self.app = app
        self.decider = decider
        self.auth = auth
        self.ingest = ingest
        self._routes: dict[bytes, CheckRoute] = {}
        self._generation = auth.generation

    def recall(self, request: bytes) -> CheckRoute | None:
        """The route of a request seen before under the same keys, if any."""
        if self._generation != self.auth.generation:
            self._routes = {}
            self._generation = self.auth.generation
            return None
        return self._routes.get(request)

    def remember(self, request: bytes, route: CheckRoute) -> None:
        """Keep the route of a whole request (bounded: ids come from requests)."""
        if len(self._routes) >= _MAX_ROUTES:
            self._routes = {}
        self._routes[request] = route

    def answer(
        self, path: str, query: bytes, headers: Sequence[tuple[bytes, bytes]]
    ) -> bytes | None:
        """The JSON body of a check's 200, or None when the request is not a well-formed,
        authorized check (``path`` is percent-decoded; header names are lower case)."""
        route = self.route(path, query, headers)
        return None if route is None else self.respond(route)

    def respond(self, route: CheckRoute) -> bytes:
        """Decide now and encode the answer."""
        decision = self.decider.check(*route)
        _DECISIONS.record(decision.isGranted)
        return _encode(decision)

    def route(
        self, path: str, query: bytes, headers: Sequence[tuple[bytes, bytes]]
    ) -> CheckRoute | None:
        """What a well-formed, authorized check asks, or None."""
        if not (path.startswith(_CHECK_PREFIX) and path.endswith(_CHECK_SUFFIX)):
            return None
        customer = path[len(_CHECK_PREFIX) : -len(_CHECK_SUFFIX)]
        if not customer or "/" in customer:
            return None
        key = None
        for name, value in headers:
            if name == b"x-api-key":
                key = value
        if not self.auth.accepts(key):
            return None
        params = _query(query)
        feature = params.get("featureId", "")
        resource = params.get("resourceId")
        if not 0 < len(feature) <= 255 or (resource is not None and len(resource) > 255):
            return None
        raw = params.get("requestedUsage")
        requested: float | int = 1
        if raw is not None:
            try:
                requested = float(raw)
            except ValueError:
                return None
            if not math.isfinite(requested) or requested < 0:
                return None
            if requested.is_integer():
                requested = int(requested)
        return customer, feature, requested, resource

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            if scope["method"] == "GET":
                body = self.answer(scope["path"], scope["query_string"], scope["headers"])
                if body is not None:
                    await _send_json(send, 200, body)
                    return
            elif scope["method"] == "POST" and scope["path"] in _INGEST_PATHS:
                await self._post(_INGEST_PATHS[scope["path"]], scope, receive, send)
                return
        await self.app(scope, receive, send)

    async def _post(self, kind: int, scope: dict[str, Any], receive: Any, send: Any) -> None:
        """An ingest batch without Starlette's routing, middleware and dependency
        resolution, which cost 150–200 µs of CPU per request whatever its size: most of a
        small batch's cost (``bench/ingest_path.py``). The same ``Ingest`` as the route;
        errors answered by the same handlers."""
        key = declared = None
        for name, value in scope["headers"]:  # the first of a repeated header, as Starlette
            if name == b"x-api-key" and key is None:
                key = value.decode("latin-1")
            elif name == b"content-length" and declared is None:
                declared = value.decode("latin-1")
        try:
            body = await self.ingest(kind, key, declared, _body_pieces(receive))
        except ClientDisconnect:
            return  # nobody to answer; nothing was acked
        except Exception as exc:
            response = await errors.respond(Request(scope, receive), exc)
            await response(scope, receive, send)
            return
        respond = scope.get("extensions", {}).get(RESPOND, {}).get("respond")
        if respond is None or not respond(202, body):  # else the server answered in one write
            await _send_json(send, 202, body)


async def _send_json(send: Any, status: int, body: bytes) -> None:
    headers = [*_JSON_HEADERS, (b"content-length", b"%d" % len(body))]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def create_app(
    buffer: DurableBuffer,
    decider: Decider,
    api_keys: tuple[str, ...],
    *,
    max_body_bytes: int = 8 * 1024 * 1024,
    lateness_days: float = 35.0,
    ready: Callable[[], bool] | None = None,
) -> FastAPI:
    """The API over a buffer and a decider."""
    app = FastAPI(title="Meterplane data plane", version=__version__, docs_url=None, redoc_url=None)
    errors.install(app)
    auth = Auth(api_keys)
    app.state.auth = auth
    window = TimeWindow(lateness_us=int(lateness_days * 86_400 * US_PER_S))
    is_ready = ready or buffer.ready
    ingest = Ingest(buffer, auth, window, max_body_bytes)

    def authorized(x_api_key: ApiKey = None) -> None:
        """The key, checked before the query is: a caller without one learns nothing else."""
        auth(x_api_key)

    async def _ingest(request: Request, key: str | None, kind: int) -> Response:
        declared = request.headers.get("content-length")
        body = await ingest(kind, key, declared, request.stream())
        return Response(body, 202, media_type=JSON)

    @app.post(
        "/api/v1/events",
        status_code=202,
        openapi_extra=_body("EventBatch"),
        responses=_responses(202, "Accepted", 400, 401, 413, 422, 503),
        summary="Ingest 1 to 1,000 events; 202 only once durable",
    )
    async def post_events(request: Request, x_api_key: ApiKey = None) -> Response:
        return await _ingest(request, x_api_key, KIND_EVENTS)

    @app.post(
        "/api/v1/usage",
        status_code=202,
        openapi_extra=_body("UsageBatch"),
        responses=_responses(202, "Accepted", 400, 401, 413, 422, 503),
        summary="Report usage (DELTA or SET) for features without a meter",
    )
    async def post_usage(request: Request, x_api_key: ApiKey = None) -> Response:
        return await _ingest(request, x_api_key, KIND_USAGE)

    @app.get(
        "/api/v1/customers/{customerId}/entitlements/check",
        responses=_responses(200, "Decision", 401, 422),
        summary="One entitlement decision (unknown customer/feature is a denial reason)",
        dependencies=[Depends(authorized)],
    )
    async def check(
        customerId: str,  # noqa: N803 - the public API's path parameter
        featureId: Annotated[str, Query(min_length=1, max_length=255)],  # noqa: N803
        requestedUsage: Annotated[float, Query(ge=0, allow_inf_nan=False)] = 1,  # noqa: N803
        resourceId: Annotated[str | None, Query(max_length=255)] = None,  # noqa: N803
    ) -> Response:
        requested = int(requestedUsage) if float(requestedUsage).is_integer() else requestedUsage
        decision = decider.check(customerId, featureId, requested, resourceId)
        _DECISIONS.record(decision.isGranted)
        return _json(decision)

    @app.get(
        "/api/v1/customers/{customerId}/entitlements",
        responses=_responses(200, "EntitlementList", 401),
        summary="Every feature's decision for a customer",
        dependencies=[Depends(authorized)],
    )
    async def list_entitlements(customerId: str) -> Response:  # noqa: N803
        return _json(EntitlementList(decider.list(customerId)))

    @app.get("/livez", responses=_responses(200, "Health"))
    async def livez() -> Response:
        return _json(Health("UP"))

    @app.get("/readyz", responses=_responses(200, "Health", 503))
    async def readyz() -> Response:
        if is_ready():
            return _json(Health("UP"))
        return _json(Health("DOWN"), 503)

    @app.get("/metrics", include_in_schema=False)
    async def metrics_endpoint() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            from fastapi.openapi.utils import get_openapi  # noqa: PLC0415 - built once, lazily

            schema = get_openapi(title=app.title, version=app.version, routes=app.routes)
            schema.setdefault("components", {}).setdefault("schemas", {}).update(_COMPONENTS)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    # The outermost layer (see ``asgi``): the hot check and ingest skip Starlette's stack.
    app.state.fast_check = FastCheck(app, decider, auth, ingest)
    return app


def asgi(app: FastAPI) -> FastCheck:
    """What to serve: the app behind its check fast path (``create_app`` builds both)."""
    fast: FastCheck = app.state.fast_check
    return fast
