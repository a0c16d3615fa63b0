"""The one boundary where wattwatch errors become HTTP answers ``{"error": {code, message}}``."""

from __future__ import annotations

import logging
import math

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from wattwatch import errors

log = logging.getLogger(__name__)

STATUS: dict[type[errors.WattwatchError], int] = {
    errors.NotFound: 404,
    errors.Conflict: 409,
    errors.InvalidInput: 422,
    errors.Forbidden: 403,
    errors.AuthError: 401,
    errors.RateLimited: 429,
    errors.PayloadTooLarge: 413,
    errors.DeviceTimeout: 504,
    errors.Overloaded: 503,
    errors.Unavailable: 503,
}


def error_response(
    status: int, code: str, message: str, *, retry_after_s: float | None = None
) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else {}
    if retry_after_s is not None:
        headers["Retry-After"] = str(max(1, math.ceil(retry_after_s)))
    return JSONResponse(
        {"error": {"code": code, "message": message}}, status_code=status, headers=headers
    )


def install(app: FastAPI) -> None:
    @app.exception_handler(errors.WattwatchError)
    async def _wattwatch(_: Request, exc: errors.WattwatchError) -> JSONResponse:
        for cls in type(exc).__mro__:
            if cls in STATUS:
                retry = exc.retry_after_s if isinstance(exc, errors.RateLimited) else None
                return error_response(STATUS[cls], exc.code, str(exc), retry_after_s=retry)
        log.error("unmapped error: %s", exc)
        return error_response(500, exc.code, "internal error")

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        parts = []
        for e in exc.errors()[:10]:
            where = ".".join(str(x) for x in e.get("loc", ()) if x != "body")
            parts.append(f"{where}: {e.get('msg')}" if where else str(e.get("msg")))
        return error_response(422, "invalid_input", "; ".join(parts) or "invalid request")

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed", 413: "too_large"}.get(
            exc.status_code, "http_error"
        )
        return error_response(exc.status_code, code, str(exc.detail))
