"""Every error the API returns, mapped in one place to ``{"error": {code, message, details}}``."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from meterplane.core import metrics
from meterplane.core.errors import (
    BufferUnavailable,
    InvalidBatch,
    MalformedBody,
    TooLarge,
    Unauthorized,
    field_path,
)

log = logging.getLogger(__name__)


def error_response(
    status: int,
    code: str,
    message: str,
    details: list[Any] | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    """The one error body shape."""
    body = {"error": {"code": code, "message": message, "details": details or []}}
    return Response(
        msgspec.json.encode(body), status, headers=headers, media_type="application/json"
    )


def _reject(status: int, code: str, message: str, **kw: Any) -> Response:
    metrics.BATCHES_REJECTED.labels(str(status)).inc()
    return error_response(status, code, message, **kw)


async def _invalid(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, InvalidBatch)
    details = [d.as_dict() for d in exc.details]
    return _reject(422, "invalid_items", str(exc), details=details)


async def _malformed(_: Request, exc: Exception) -> Response:
    return _reject(400, "malformed_body", str(exc))


async def _too_large(_: Request, exc: Exception) -> Response:
    return _reject(413, "too_large", str(exc))


async def _unauthorized(_: Request, exc: Exception) -> Response:
    return error_response(401, "unauthorized", str(exc))


async def _unavailable(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, BufferUnavailable)
    retry = str(exc.retry_after_s)
    return _reject(503, "buffer_unavailable", str(exc), headers={"Retry-After": retry})


async def _validation(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    details = [
        {"index": None, "field": field_path(e["loc"]), "message": e["msg"]} for e in exc.errors()
    ]
    return error_response(422, "invalid_request", "request parameters are invalid", details)


async def _http(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    return error_response(exc.status_code, code, str(exc.detail))


async def _unexpected(_: Request, exc: Exception) -> Response:
    log.exception("unexpected error", exc_info=exc)
    return error_response(500, "internal", "internal error; nothing from this request was acked")


Handler = Callable[[Request, Exception], Awaitable[Response]]
_HANDLERS: dict[type[Exception], Handler] = {
    InvalidBatch: _invalid,
    MalformedBody: _malformed,
    TooLarge: _too_large,
    Unauthorized: _unauthorized,
    BufferUnavailable: _unavailable,
    RequestValidationError: _validation,
    StarletteHTTPException: _http,
    Exception: _unexpected,
}


def install(app: FastAPI) -> None:
    """Register the handlers on ``app``."""
    for exc, handler in _HANDLERS.items():
        app.add_exception_handler(exc, handler)


async def respond(request: Request, exc: Exception) -> Response:
    """The response ``install``'s handlers give ``exc`` (for paths that skip the app)."""
    for cls in type(exc).__mro__:
        handler = _HANDLERS.get(cls)
        if handler is not None:
            return await handler(request, exc)
    raise exc  # unreachable: Exception itself has a handler
