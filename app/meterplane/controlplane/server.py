"""The reference control plane: the protocol of ``docs/control-plane-openapi.yaml`` plus a
small admin API (not part of the protocol) through which the vendor side — the demo, an
operator, a test — pushes change records and reads totals, lifecycle events and the
journal of exchanges.

It only ever answers requests: every exchange is opened by an agent, and each one is
journaled with the peer address and the exact body received.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

import msgspec
from fastapi import FastAPI, Header, Request
from starlette.responses import Response

from meterplane import __version__
from meterplane.controlplane.store import ControlPlaneStore, token_hash
from meterplane.core.timeutil import iso, now_us
from meterplane.sync.protocol import (
    API_PREFIX,
    CHANGE_DATA,
    CHANGE_TYPES,
    MAX_BATCH,
    MAX_WAIT_S,
    BatchResult,
    ChangePage,
    LifecycleBatch,
    Problem,
    ProblemInfo,
    RollupBatch,
)

JSON = "application/json"
AuthHeader = Annotated[str | None, Header(alias="Authorization")]

_SCHEMAS, _COMPONENTS = msgspec.json.schema_components(
    [ChangePage, RollupBatch, LifecycleBatch, BatchResult, Problem, *CHANGE_DATA.values()],
    ref_template="#/components/schemas/{name}",
)
# ``ChangeRecord.data`` is typed loosely on the wire (its shape depends on ``type``); the
# document names the shape of each type.
_COMPONENTS["ChangeRecord"]["properties"]["data"] = {
    "description": "Shape by `type`: "
    + "; ".join(f"{k} -> {v.__name__}" for k, v in CHANGE_DATA.items()),
    "oneOf": [
        {"$ref": f"#/components/schemas/{v.__name__}"} for v in dict.fromkeys(CHANGE_DATA.values())
    ],
}


class AdminChange(msgspec.Struct, forbid_unknown_fields=True):
    """Admin: a change to append to an environment's feed."""

    type: str
    data: dict[str, Any]
    id: str | None = None


class AdminFaults(msgspec.Struct, forbid_unknown_fields=True):
    """Admin: delay answers to POSTs after storing them (to make a data plane resend)."""

    ackDelaySeconds: float = 0.0  # noqa: N815


class _Refused(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def _json(obj: Any, status: int = 200) -> Response:
    return Response(msgspec.json.encode(obj), status, media_type=JSON)


def _ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


def _doc(ok: str, *errors: int, body: str | None = None) -> dict[str, Any]:
    responses: dict[str, Any] = {
        "200": {"description": "OK", "content": {JSON: {"schema": _ref(ok)}}}
    }
    for status in errors:
        responses[str(status)] = {
            "description": "error",
            "content": {JSON: {"schema": _ref("Problem")}},
        }
    extra: dict[str, Any] = {"responses": responses, "security": [{"environmentToken": []}]}
    if body is not None:
        extra["requestBody"] = {"required": True, "content": {JSON: {"schema": _ref(body)}}}
    return extra


def _bearer(header: str | None) -> str | None:
    if header is None or not header.startswith("Bearer "):
        return None
    return header[len("Bearer ") :].strip() or None


class _Plane:
    """Shared pieces of the routes: the store, credentials, long-poll wakeups, journal."""

    def __init__(self, store: ControlPlaneStore, admin_token: str) -> None:
        self.store = store
        self.admin_token = admin_token
        self.faults = AdminFaults()
        self.wakeups: dict[str, asyncio.Event] = {}

    def wakeup(self, env: str) -> asyncio.Event:
        """The event set by the next push to ``env``."""
        ev = self.wakeups.get(env)
        if ev is None:
            ev = self.wakeups[env] = asyncio.Event()
        return ev

    def notify(self, env: str) -> None:
        """Wake every long-poll of ``env``."""
        self.wakeups.pop(env, asyncio.Event()).set()

    def check_env(self, env: str, authorization: str | None) -> None:
        """The bearer credential must be the environment's own."""
        given = _bearer(authorization)
        expected = self.store.token_of(env)
        # Same answer for an unknown environment and a wrong token: do not reveal which.
        if given is None or expected is None:
            raise _Refused(401, "unauthorized", "missing or unknown bearer credential")
        if not hmac.compare_digest(token_hash(given), expected):
            raise _Refused(401, "unauthorized", "missing or unknown bearer credential")

    def check_admin(self, authorization: str | None) -> None:
        """The admin API needs the admin credential."""
        given = _bearer(authorization) or ""
        if not hmac.compare_digest(given.encode(), self.admin_token.encode()):
            raise _Refused(401, "unauthorized", "admin credential required")

    def record(self, env: str, request: Request, body: bytes, status: int) -> None:
        """Journal one exchange: who opened it, what it carried, how it was answered."""
        peer = f"{request.client.host}:{request.client.port}" if request.client else "?"
        self.store.journal(
            env,
            request.method,
            request.url.path,
            request.url.query,
            peer,
            body,
            status,
            iso(now_us()) or "",
        )

    async def guarded(
        self, env: str, request: Request, body: bytes, handler: Callable[[], Awaitable[Response]]
    ) -> Response:
        """Authenticate, run ``handler``, journal the exchange whatever the outcome."""
        try:
            self.check_env(env, request.headers.get("authorization"))
            resp = await handler()
        except _Refused as exc:
            self.record(env, request, body, exc.status)
            raise
        self.record(env, request, body, resp.status_code)
        return resp


_DESCRIPTION = (
    "What a Meterplane sync agent exchanges with the vendor's control plane. Every "
    "request is made by the agent (outbound HTTPS from the customer's network; "
    "nothing connects into it). Authentication: `Authorization: Bearer <token>`, one "
    "credential per environment, valid only for that environment's paths. Only "
    "aggregates are ever sent: no field of an individual event (event name, "
    "dimensions, idempotency key, resource id, per-event timestamp)."
)


def create_control_plane(store: ControlPlaneStore, admin_token: str) -> FastAPI:
    """The reference control plane over a store."""
    app = FastAPI(
        title="Meterplane control-plane protocol",
        version=__version__,
        description=_DESCRIPTION,
        docs_url=None,
        redoc_url=None,
    )
    cp = _Plane(store, admin_token)
    app.state.plane = cp

    @app.exception_handler(_Refused)
    async def _refused(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, _Refused)
        return _json(Problem(ProblemInfo(exc.code, exc.message)), exc.status)

    @app.get("/livez", include_in_schema=False)
    async def livez() -> Response:
        return _json({"status": "UP"})

    _protocol_routes(app, cp)
    _admin_routes(app, cp)
    _install_openapi(app)
    return app


def _protocol_routes(app: FastAPI, cp: _Plane) -> None:
    store = cp.store

    @app.get(
        API_PREFIX + "/{environment}/changes",
        summary="Long-poll ordered change records after a cursor",
        description=(
            "Returns the change records with a sequence number above `after` (all of them "
            "when `after` is absent), oldest first, at most 500. When there are none, the "
            "request is held up to `wait` seconds (at most 60) and answered as soon as one "
            "arrives, or empty at the deadline. Apply the records in order, then send the "
            "returned `cursor` as `after` next time. Record types and their `data`: "
            "catalog.updated (CatalogData), subscription.created / subscription.changed "
            "(SubscriptionUpsert), subscription.cancelled (SubscriptionCancel), "
            "credit.granted (CreditGrantData), credit.revoked (CreditRevoke), "
            "governance.updated (GovernanceData). Every record sets state (it never adds), "
            "so applying one twice is harmless."
        ),
        openapi_extra=_doc("ChangePage", 400, 401),
    )
    async def changes(
        environment: str, request: Request, after: str | None = None, wait: float = 0.0
    ) -> Response:
        async def handle() -> Response:
            try:
                cursor = int(after) if after is not None else 0
            except ValueError:
                raise _Refused(400, "bad_cursor", f"not a cursor: {after!r}") from None
            if cursor < 0:
                raise _Refused(400, "bad_cursor", "cursor must be >= 0")
            loop = asyncio.get_running_loop()
            deadline = loop.time() + max(0.0, min(wait, MAX_WAIT_S))
            while True:
                ev = cp.wakeup(environment)  # taken before reading, so no push is missed
                recs = store.changes_after(environment, cursor, MAX_BATCH)
                remaining = deadline - loop.time()
                if recs or remaining <= 0:
                    break
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(ev.wait(), remaining)
            last = recs[-1].seq if recs else cursor
            return _json(ChangePage(recs, str(last)))

        return await cp.guarded(environment, request, b"", handle)

    async def _post(environment: str, request: Request, kind: type[Any], store_fn: Any) -> Response:
        body = await request.body()

        async def handle() -> Response:
            try:
                batch = msgspec.json.decode(body, type=kind)
            except (msgspec.ValidationError, msgspec.DecodeError) as err:
                raise _Refused(422, "invalid_body", str(err)) from None
            items = batch.rollups if kind is RollupBatch else batch.events
            if not 1 <= len(items) <= MAX_BATCH:
                raise _Refused(422, "invalid_body", f"a batch holds 1 to {MAX_BATCH} items")
            out = store_fn(environment, items)
            delay = cp.faults.ackDelaySeconds
            if delay > 0:
                await asyncio.sleep(delay)  # stored, but the answer is late (fault injection)
            return _json(BatchResult(out.accepted, out.duplicates, out.stale))

        return await cp.guarded(environment, request, body, handle)

    @app.post(
        API_PREFIX + "/{environment}/rollups",
        summary="Publish usage rollups (exact totals; resends recognized by rollupId)",
        description=(
            "Each rollup is a customer's total for one feature and usage period as of "
            "`asOf`. The control plane keeps, per (customer, feature, periodStart), the value "
            "of the highest `revision`. A `rollupId` already received is counted as a "
            "duplicate and changes nothing; a revision below the stored one is stale. "
            "Answer 200 only once the batch is stored; the agent resends otherwise."
        ),
        openapi_extra=_doc("BatchResult", 401, 422, body="RollupBatch"),
    )
    async def post_rollups(environment: str, request: Request) -> Response:
        return await _post(environment, request, RollupBatch, store.add_rollups)

    @app.post(
        API_PREFIX + "/{environment}/lifecycle-events",
        summary="Publish subscription lifecycle events (resends recognized by eventId)",
        description=(
            "usage.limit_crossed: a customer's usage of a METERED feature reached its "
            "limit (plan + add-ons + valid credit grants) in a usage period; one event per "
            "crossing per period."
        ),
        openapi_extra=_doc("BatchResult", 401, 422, body="LifecycleBatch"),
    )
    async def post_lifecycle(environment: str, request: Request) -> Response:
        return await _post(environment, request, LifecycleBatch, store.add_lifecycle)


def _admin_routes(app: FastAPI, cp: _Plane) -> None:
    store = cp.store

    @app.put("/admin/v1/environments/{environment}", include_in_schema=False)
    async def admin_env(
        environment: str, request: Request, authorization: AuthHeader = None
    ) -> Response:
        cp.check_admin(authorization)
        token = msgspec.json.decode(await request.body()).get("token", "")
        if len(token) < 16:
            raise _Refused(422, "invalid_body", "token needs 16+ characters")
        store.set_environment(environment, token)
        return _json({"environment": environment})

    @app.post("/admin/v1/environments/{environment}/changes", include_in_schema=False)
    async def admin_push(
        environment: str, request: Request, authorization: AuthHeader = None
    ) -> Response:
        cp.check_admin(authorization)
        try:
            change = msgspec.json.decode(await request.body(), type=AdminChange)
            if change.type not in CHANGE_TYPES:
                raise _Refused(422, "invalid_body", f"unknown change type {change.type!r}")
            msgspec.convert(change.data, type=CHANGE_DATA[change.type])
        except (msgspec.ValidationError, msgspec.DecodeError) as err:
            raise _Refused(422, "invalid_body", str(err)) from None
        rec = store.append_change(
            environment, change.type, change.data, iso(now_us()) or "", change.id
        )
        cp.notify(environment)
        return _json(rec)

    @app.get("/admin/v1/environments/{environment}/state", include_in_schema=False)
    async def admin_state(environment: str, authorization: AuthHeader = None) -> Response:
        cp.check_admin(authorization)
        return _json(
            {
                "totals": store.totals(environment),
                "lifecycleEvents": store.lifecycle(environment),
                "counts": store.counts(environment),
                "changes": store.changes_after(environment, 0, 1_000_000),
            }
        )

    @app.get("/admin/v1/exchanges", include_in_schema=False)
    async def admin_exchanges(authorization: AuthHeader = None) -> Response:
        cp.check_admin(authorization)
        return _json({"exchanges": store.exchanges()})

    @app.put("/admin/v1/faults", include_in_schema=False)
    async def admin_faults(request: Request, authorization: AuthHeader = None) -> Response:
        cp.check_admin(authorization)
        try:
            cp.faults = msgspec.json.decode(await request.body(), type=AdminFaults)
        except (msgspec.ValidationError, msgspec.DecodeError) as err:
            raise _Refused(422, "invalid_body", str(err)) from None
        return _json(cp.faults)


def _install_openapi(app: FastAPI) -> None:
    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            from fastapi.openapi.utils import get_openapi  # noqa: PLC0415 - built once, lazily

            schema = get_openapi(
                title=app.title,
                version="1",
                description=app.description,
                routes=app.routes,
            )
            comps = schema.setdefault("components", {})
            comps.setdefault("schemas", {}).update(_COMPONENTS)
            comps["securitySchemes"] = {
                "environmentToken": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "The environment's credential, issued by the vendor.",
                }
            }
            schema["servers"] = [{"url": "https://control-plane.example.com"}]
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
