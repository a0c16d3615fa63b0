"""Real receivers for hook tests: a local HTTP server that can fail on cue, an SMTP server."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """Answers ``fail_first`` requests with 503, then 200; ``hang_s`` delays every answer."""

    fail_first: int = 0
    hang_s: float = 0.0
    requests: list[Received] = field(default_factory=list)
    attempts: int = 0
    attempt_ids: list[str] = field(default_factory=list)
    server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def wait(self, n: int, timeout_s: float = 10.0) -> list[Received]:
        deadline = time.monotonic() + timeout_s
        while len(self.requests) < n and time.monotonic() < deadline:
            time.sleep(0.01)
        return self.requests


def _handler(receiver: Receiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            receiver.attempts += 1
            receiver.attempt_ids.append(self.headers.get("X-Wattwatch-Delivery", ""))
            hang_s = receiver.hang_s
            if hang_s:
                time.sleep(hang_s)
            try:
                if receiver.attempts <= receiver.fail_first:
                    self.send_response(503)
                    self.end_headers()
                    return
                if not hang_s:  # an answer nobody waits for any more is not a delivery
                    receiver.requests.append(Received(self.path, dict(self.headers.items()), body))
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")
            except (BrokenPipeError, ConnectionResetError):
                pass  # the sender gave up waiting (a timeout test)

        def log_message(self, *_: Any) -> None:
            pass

    return Handler


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    r.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(r))
    r.server.daemon_threads = True
    thread = threading.Thread(target=r.server.serve_forever, daemon=True)
    thread.start()
    yield r
    r.server.shutdown()
    r.server.server_close()
    thread.join()


@pytest.fixture
def fast_settings(tmp_path: Any) -> Any:
    """Settings with a short retry schedule: 4 tries, 50/100/200 ms apart, 1 s timeout."""
    from wattwatch.config import Settings

    def make(**more: Any) -> Settings:
        return Settings(
            data_dir=tmp_path / "data",
            delivery_attempts=4,
            delivery_first_delay_s=0.05,
            delivery_backoff_factor=2.0,
            delivery_timeout_s=1.0,
            **more,
        )

    return make


@pytest.fixture
def app_client(fast_settings: Any) -> Iterator[Any]:
    """``make(**settings)`` → (Wattwatch, TestClient logged in as owner); closed afterwards."""
    from fastapi.testclient import TestClient

    from wattwatch.app import Wattwatch
    from wattwatch.web.server import create_api

    opened: list[tuple[Any, Any]] = []

    def make(before_start: Any = None, **more: Any) -> tuple[Any, Any]:
        ww = Wattwatch.open(fast_settings(**more), lock=True)
        if before_start is not None:
            before_start(ww)
        boot = ww.registry.bootstrap_owner()
        client = TestClient(create_api(ww))
        client.__enter__()
        opened.append((ww, client))
        r = client.post("/api/v1/auth/login", json={"email": boot.email, "password": boot.password})
        client.headers["Authorization"] = f"Bearer {r.json()['access_token']}"
        return ww, client

    yield make
    for ww, client in opened:
        client.__exit__(None, None, None)
        ww.close()


def add_device(client: Any) -> tuple[int, dict[str, str]]:
    r = client.post("/api/v1/devices", json={"name": "heater"})
    return r.json()["id"], {"Authorization": f"Bearer {r.json()['token']}"}
