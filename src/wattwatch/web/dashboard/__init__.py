"""The web dashboard: server-rendered pages, static assets, security headers, live stream."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

if TYPE_CHECKING:
    from fastapi import FastAPI

    from wattwatch.live import LiveHub

WEB_DIR = Path(__file__).resolve().parent.parent
STATIC_DIR = WEB_DIR / "static"
TEMPLATES_DIR = WEB_DIR / "templates"

# No inline script anywhere: every script is a file under /static. uPlot styles its canvas
# through the CSSOM (element.style), which a style-src without 'unsafe-inline' allows.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)
SECURITY_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"same-origin"),
)
# Paths whose HTML is not the dashboard's (Swagger UI loads its own scripts; report HTML
# carries its own styles), so they do not get the dashboard's CSP.
_NO_CSP_PREFIXES = ("/api/", "/docs", "/redoc", "/openapi.json")


class SecurityHeaders:
    """Pure ASGI middleware (it does not buffer, so the SSE stream passes straight through)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        csp = not str(scope.get("path", "")).startswith(_NO_CSP_PREFIXES)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {k.lower() for k, _ in headers}
                headers.extend(h for h in SECURITY_HEADERS if h[0] not in present)
                if csp and b"content-security-policy" not in present:
                    headers.append((b"content-security-policy", CONTENT_SECURITY_POLICY.encode()))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)


@contextlib.contextmanager
def end_streams_on_exit_signal(hub: LiveHub) -> Iterator[None]:
    """End live streams as soon as SIGTERM/SIGINT arrives.

    uvicorn waits for open responses before it shuts the app down, and an SSE stream never
    finishes by itself: without this a stop would hang until the process is killed. The
    previous handler (uvicorn's) still runs, so the shutdown proceeds as usual.
    """
    if threading.current_thread() is not threading.main_thread():
        yield  # signals only reach the main thread (TestClient runs apps elsewhere)
        return
    loop = asyncio.get_running_loop()
    previous: dict[int, Any] = {}

    def handler(sig: int, frame: FrameType | None) -> None:
        loop.call_soon_threadsafe(hub.close)
        before = previous.get(sig)
        if callable(before):
            before(sig, frame)

    for sig in (signal.SIGINT, signal.SIGTERM):
        previous[int(sig)] = signal.getsignal(sig)
        signal.signal(sig, handler)
    try:
        yield
    finally:
        for num, before in previous.items():
            if signal.getsignal(num) is handler:
                signal.signal(num, before)


def install(app: FastAPI) -> None:
    """Add the dashboard pages, static files, live stream and security headers to ``app``."""
    from fastapi.staticfiles import StaticFiles

    from wattwatch.web.api import stream
    from wattwatch.web.dashboard import pages

    app.include_router(stream.router)
    app.include_router(pages.router)
    pages.install_handlers(app)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    app.add_middleware(SecurityHeaders)

    inner = app.router.lifespan_context

    @contextlib.asynccontextmanager
    async def lifespan(a: Any) -> AsyncIterator[Any]:
        async with inner(a) as state:
            with end_streams_on_exit_signal(app.state.ww.live):
                yield state

    app.router.lifespan_context = lifespan
