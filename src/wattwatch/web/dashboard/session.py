"""Dashboard sessions: the login token in an HttpOnly cookie, and CSRF tokens bound to it."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from typing import TYPE_CHECKING

from starlette.requests import HTTPConnection
from starlette.responses import Response

if TYPE_CHECKING:
    from wattwatch.registry.service import Principal

SESSION_COOKIE = "ww_session"
# Double-submit cookie for the login form, which is posted before there is a session.
LOGIN_CSRF_COOKIE = "ww_login_csrf"
CSRF_HEADER = "x-csrf-token"
CSRF_FIELD = "csrf_token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def session_token(conn: HTTPConnection) -> str | None:
    return conn.cookies.get(SESSION_COOKIE) or None


def csrf_for(session: str) -> str:
    """The CSRF token of a session: derived from the secret session token, so nothing is
    stored, and a page of another origin (which cannot read the HttpOnly cookie) cannot
    produce it."""
    return hmac.new(session.encode(), b"wattwatch-csrf", hashlib.sha256).hexdigest()


def csrf_ok(session: str, given: str | None) -> bool:
    return bool(given) and hmac.compare_digest(csrf_for(session), given or "")


def is_https(conn: HTTPConnection) -> bool:
    return conn.url.scheme == "https"


def set_session(response: Response, conn: HTTPConnection, token: str, max_age_s: int) -> None:
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=max_age_s,
        path="/",
        httponly=True,
        samesite="lax",
        secure=is_https(conn),
    )


def clear_session(response: Response, conn: HTTPConnection) -> None:
    response.delete_cookie(
        SESSION_COOKIE, path="/", httponly=True, samesite="lax", secure=is_https(conn)
    )


def login_csrf(conn: HTTPConnection, response: Response | None = None) -> str:
    """The login form's CSRF token: the cookie's value, or a new one set on ``response``."""
    token = conn.cookies.get(LOGIN_CSRF_COOKIE)
    if token and len(token) >= 32:
        return token
    token = secrets.token_urlsafe(32)
    if response is not None:
        set_login_csrf(response, conn, token)
    return token


def set_login_csrf(response: Response, conn: HTTPConnection, token: str) -> None:
    response.set_cookie(
        LOGIN_CSRF_COOKIE,
        token,
        max_age=3600,
        path="/login",
        httponly=True,
        samesite="strict",
        secure=is_https(conn),
    )


def can_control(principal: Principal) -> bool:
    """Who sees switches and may send commands: admins and owners, never viewers."""
    from wattwatch.domain import Role

    return principal.role.at_least(Role.ADMIN)
