"""HTTP abuse guards uvicorn lacks: a connection cap, header and body deadlines, body size limits.

uvicorn (0.3x) arms no timer until a first response is sent, so a connection that never sends
a request, or trickles its headers a byte at a time (slowloris), is kept for ever; and its
``limit_concurrency`` answers 503 to *every* request while the count of open connections is at
the limit, so a flood of idle connections would starve the devices already connected. The
protocol class ``guarded_protocol`` builds instead (a subclass of the one uvicorn would pick):

- closes a new connection at once, with a short 503, when ``max_connections`` are open (or
  ``max_connections_per_ip`` from its address): established connections keep working;
- closes a connection whose request headers are not complete ``header_timeout_s`` after it
  opened or after its previous response (uvicorn's keep-alive timeout closes idle ones sooner);
- answers 408 and closes when a request body is not complete ``body_timeout_s`` after its
  headers.

``BodyLimit`` is the ASGI middleware that caps every request body: uploads (device telemetry,
inventory import) at ``upload_bytes``, everything else at ``api_bytes``. A declared
Content-Length over the cap is answered 413 before anything is read; a chunked body is counted
as it arrives and the route's read ends in 413 when it passes the cap.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

import orjson
from prometheus_client import CollectorRegistry
from prometheus_client import Counter as PromCounter
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger(__name__)

# Routes that take large bodies (their own readers check the size too).
UPLOAD_SUFFIXES = ("/telemetry", "/attributes", "/devices/import")


@dataclass(frozen=True, slots=True)
class HttpLimits:
    max_connections: int = 1000
    max_connections_per_ip: int = 0  # 0: no limit
    header_timeout_s: float = 10.0
    body_timeout_s: float = 120.0


def _raw_response(status: str, code: str, message: str, extra: str = "") -> bytes:
    body = orjson.dumps({"error": {"code": code, "message": message}})
    head = (
        f"HTTP/1.1 {status}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n{extra}\r\n"
    )
    return head.encode() + body


_TOO_MANY = _raw_response(
    "503 Service Unavailable",
    "overloaded",
    "too many connections; try again in a few seconds",
    "retry-after: 5\r\n",
)
_BODY_TIMEOUT = _raw_response(
    "408 Request Timeout", "timeout", "the request body did not arrive in time"
)


class ConnectionGuard:
    """What the guarded connections of one server share: counts per address, metrics."""

    def __init__(self, limits: HttpLimits, registry: CollectorRegistry | None = None) -> None:
        self.limits = limits
        self.per_ip: Counter[str] = Counter()
        self.closed = PromCounter(
            "wattwatch_http_connections_closed",
            "HTTP connections closed by a guard (refused at the cap, header or body timeout)",
            ["reason"],
            registry=registry,
        )
        for reason in ("refused", "header_timeout", "body_timeout"):
            self.closed.labels(reason)
        self._noted: dict[str, float] = {}

    def note(self, reason: str, message: str, *args: Any) -> None:
        """Count, and log at most once a minute per reason: a flood must not flood the log."""
        self.closed.labels(reason).inc()
        now = time.monotonic()
        if now - self._noted.get(reason, -120.0) >= 60.0:
            self._noted[reason] = now
            log.warning(message, *args)


def _base_protocol() -> type[asyncio.Protocol]:
    """The protocol uvicorn's ``http="auto"`` picks: httptools when installed, else h11."""
    try:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
    except ImportError:  # pragma: no cover - uvicorn[standard] installs httptools
        from uvicorn.protocols.http.h11_impl import H11Protocol

        return H11Protocol
    return HttpToolsProtocol


def guarded_protocol(guard: ConnectionGuard) -> type[asyncio.Protocol]:
    """uvicorn's HTTP protocol class with the connection cap and the deadlines of ``guard``."""
    base: Any = _base_protocol()
    limits = guard.limits

    class GuardedHttpProtocol(base):  # type: ignore[misc]
        _ww_refused = False
        _ww_ip: str | None = None
        _ww_timer: asyncio.TimerHandle | None = None
        _ww_body_timer = False

        def connection_made(self, transport: asyncio.Transport) -> None:
            super().connection_made(transport)
            ip = self.client[0] if self.client else ""
            per_ip = limits.max_connections_per_ip
            if len(self.connections) > limits.max_connections or (
                per_ip and guard.per_ip[ip] >= per_ip
            ):
                self._ww_refused = True
                guard.note(
                    "refused",
                    "http: connection from %s refused: %d open (limits: %d, %s per address)",
                    ip,
                    len(self.connections) - 1,
                    limits.max_connections,
                    per_ip or "none",
                )
                transport.write(_TOO_MANY)
                transport.close()
                return
            self._ww_ip = ip
            guard.per_ip[ip] += 1
            self._ww_arm(limits.header_timeout_s, self._ww_header_timeout)

        def connection_lost(self, exc: Exception | None) -> None:
            self._ww_disarm()
            if self._ww_ip is not None:
                guard.per_ip[self._ww_ip] -= 1
                if guard.per_ip[self._ww_ip] <= 0:
                    del guard.per_ip[self._ww_ip]
                self._ww_ip = None
            super().connection_lost(exc)

        def data_received(self, data: bytes) -> None:
            if self._ww_refused:
                return
            before = self.cycle
            super().data_received(data)
            cycle = self.cycle
            if cycle is not None and cycle is not before:
                # A new request's headers are complete: now its body has a deadline.
                self._ww_disarm()
                if cycle.more_body:
                    self._ww_body_timer = True
                    self._ww_arm(limits.body_timeout_s, self._ww_body_timeout)
            elif self._ww_body_timer and cycle is not None and not cycle.more_body:
                self._ww_disarm()

        def on_response_complete(self) -> None:
            pipelined = bool(self.pipeline)
            super().on_response_complete()
            if not pipelined and not self.transport.is_closing():
                # The next request's headers have a deadline too (keep-alive is shorter
                # for a silent client; this one bounds a trickling one).
                self._ww_arm(limits.header_timeout_s, self._ww_header_timeout)

        def _ww_arm(self, delay: float, callback: Any) -> None:
            self._ww_disarm()
            self._ww_timer = asyncio.get_running_loop().call_later(delay, callback)

        def _ww_disarm(self) -> None:
            if self._ww_timer is not None:
                self._ww_timer.cancel()
                self._ww_timer = None
            self._ww_body_timer = False

        def _ww_header_timeout(self) -> None:
            self._ww_timer = None
            cycle = self.cycle
            if (cycle is None or cycle.response_complete) and not self.transport.is_closing():
                guard.note(
                    "header_timeout",
                    "http: %s sent no complete request headers within %g s: closed",
                    self._ww_ip,
                    limits.header_timeout_s,
                )
                self.transport.close()

        def _ww_body_timeout(self) -> None:
            self._ww_timer = None
            self._ww_body_timer = False
            cycle = self.cycle
            if cycle is None or not cycle.more_body or self.transport.is_closing():
                return
            guard.note(
                "body_timeout",
                "http: %s did not finish its request body within %g s: closed",
                self._ww_ip,
                limits.body_timeout_s,
            )
            if not cycle.response_started:
                self.transport.write(_BODY_TIMEOUT)
            self.transport.close()

    return GuardedHttpProtocol


class BodyLimit:
    """Pure ASGI middleware: request bodies at most ``upload_bytes`` on upload routes
    (``UPLOAD_SUFFIXES``) and ``api_bytes`` elsewhere; 413 with the error body beyond."""

    def __init__(self, app: ASGIApp, *, api_bytes: int, upload_bytes: int) -> None:
        self.app = app
        self.api_bytes = api_bytes
        self.upload_bytes = upload_bytes

    def limit_for(self, path: str) -> int:
        return self.upload_bytes if path.endswith(UPLOAD_SUFFIXES) else self.api_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(str(scope.get("path", "")))
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                if value.isdigit() and int(value) > limit:
                    await _too_large(send, limit)
                    return
                break
        received = 0

        async def limited() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    # Raised in the route's read: the app's error boundary answers 413
                    # (an HTTPException: FastAPI's body parsing would make anything else a 400).
                    raise HTTPException(413, _too_large_message(limit))
            return message

        await self.app(scope, limited, send)


def _too_large_message(limit: int) -> str:
    return f"request body is larger than {limit} bytes; split the upload"


async def _too_large(send: Send, limit: int) -> None:
    body = orjson.dumps({"error": {"code": "too_large", "message": _too_large_message(limit)}})
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
