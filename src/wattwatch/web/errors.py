"""The one boundary where wattwatch errors become HTTP answers ``{"error": {code, message}}``."""

from __future__ import annotations

import logging
import math
from typing import Any

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


ERROR_SCHEMA: dict[str, Any] = {
    "title": "ErrorBody",
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message"],
            "properties": {"code": {"type": "string"}, "message": {"type": "string"}},
        }
    },
}
_ERROR_CONTENT = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}
# What any operation may answer besides its own documented codes (an operation documents
# others itself: 504 of a command). Bad input is a 4xx, and a 503 is an overloaded server.
_COMMON_ERRORS = {
    "4XX": "Client error (bad input, authentication, permission, not found, conflict, limits)",
    "503": "Overloaded or unavailable: retry later (Retry-After)",
}


def document_errors(schema: dict[str, Any]) -> dict[str, Any]:
    """Declare the error body in the OpenAPI schema: every operation may answer a 4xx (or a
    503) with ``{"error": {code, message}}``, and a 422 is that body, not FastAPI's default."""
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    components["ErrorBody"] = ERROR_SCHEMA
    for operations in schema.get("paths", {}).values():
        for operation in operations.values():
            responses = operation.setdefault("responses", {})
            for code, response in responses.items():
                if code.startswith(("4", "5")) and code not in ("4XX", "5XX"):
                    response["content"] = _ERROR_CONTENT
            for code, description in _COMMON_ERRORS.items():
                responses.setdefault(code, {"description": description, "content": _ERROR_CONTENT})
    for unused in ("HTTPValidationError", "ValidationError"):
        components.pop(unused, None)
    return schema


def install(app: FastAPI) -> None:
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = document_errors(generate())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]

    @app.exception_handler(errors.WattwatchError)
    async def _wattwatch(_: Request, exc: errors.WattwatchError) -> JSONResponse:
        for cls in type(exc).__mro__:
            if cls in STATUS:
                retry = exc.retry_after_s if isinstance(exc, errors.RateLimited) else None
                return error_response(STATUS[cls], exc.code, str(exc), retry_after_s=retry)
        log.error("unmapped error: %s", exc)
        return error_response(500, exc.code, "internal error")

    @app.exception_handler(OverflowError)
    async def _overflow(_: Request, exc: OverflowError) -> JSONResponse:
        # A number past what the database stores (ids are 64-bit): no record can have it.
        log.info("number out of range in a request: %s", exc)
        return error_response(
            422, "invalid_input", "a number in the request is out of range (at most 2^63-1)"
        )

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
