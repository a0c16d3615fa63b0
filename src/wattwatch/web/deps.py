"""FastAPI dependencies as ``Annotated`` aliases: the running services and the caller."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from wattwatch.errors import AuthError, Forbidden, InvalidInput
from wattwatch.registry.service import Principal

if TYPE_CHECKING:
    from wattwatch.app import Wattwatch

_bearer = HTTPBearer(auto_error=False, description="login token or API key")


def _services(request: Request) -> Wattwatch:
    return request.app.state.ww  # type: ignore[no-any-return]


Services = Annotated["Wattwatch", Depends(_services)]


def _principal(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    if credentials is None:
        # The dashboard's own scripts call the API with the session cookie instead; a
        # state-changing call must then also carry the session's CSRF token.
        from wattwatch.web.dashboard import session

        token = session.session_token(request)
        if token is None:
            raise AuthError("log in first: send Authorization: Bearer <token>")
        if request.method not in session.SAFE_METHODS and not session.csrf_ok(
            token, request.headers.get(session.CSRF_HEADER)
        ):
            raise Forbidden("missing or wrong X-CSRF-Token header for this session")
        return _services(request).registry.principal_for_token(token)
    return _services(request).registry.principal_for_token(credentials.credentials)


Caller = Annotated[Principal, Depends(_principal)]


def device_token(
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> str:
    if credentials is None:
        raise AuthError("send the device token as Authorization: Bearer <token>")
    return credentials.credentials


DeviceToken = Annotated[str, Depends(device_token)]


def parse_time(value: str | None, default: int) -> int:
    """A query-string time: ISO 8601 or epoch milliseconds."""
    from wattwatch.domain import parse_ts

    if value is None or value == "":
        return default
    try:
        return parse_ts(value)
    except ValueError as exc:
        raise InvalidInput(str(exc)) from None


def public(record: dict[str, Any], *hide: str) -> dict[str, Any]:
    """A registry record without its secrets."""
    secret = {"token_hash", "claim_code_hash", "password_hash", *hide}
    return {k: v for k, v in record.items() if k not in secret}
