"""Shared fixtures: a real ``wattwatch serve`` process on ephemeral ports, and in-process apps."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from wattwatch.app import Wattwatch
from wattwatch.config import Settings


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServerProcess:
    """``python -m wattwatch serve`` in a subprocess, on free ports, in its own data dir."""

    def __init__(self, data_dir: Path, *extra: str) -> None:
        self.data_dir = data_dir
        self.extra = extra
        self.http_port = free_port()
        # The embedded MQTT broker's port (1883 is taken on the CI machine: Mosquitto).
        self.mqtt_port = free_port()
        self.proc: subprocess.Popen[str] | None = None
        self.output = ""
        self.password: str | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def start(self, timeout: float = 30.0) -> ServerProcess:
        log = open(self.data_dir.parent / f"serve-{self.http_port}.log", "w+")  # noqa: SIM115
        self._log = log
        env = {
            **os.environ,
            "COLUMNS": "200",
            "WATTWATCH_LOG_LEVEL": "warning",
            "WATTWATCH_MQTT_PORT": str(self.mqtt_port),
        }
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "wattwatch",
                "serve",
                "--data-dir",
                str(self.data_dir),
                "--http-port",
                str(self.http_port),
                *self.extra,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited early:\n{self.read_output()}")
            try:
                if httpx.get(self.url + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        else:
            raise RuntimeError(f"server did not start:\n{self.read_output()}")
        m = re.search(r"password:\s+(\S+)", self.read_output())
        if m:
            self.password = m.group(1)
        return self

    def read_output(self) -> str:
        self._log.flush()
        self._log.seek(0)
        self.output = self._log.read()
        return self.output

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


@pytest.fixture
def server_factory(tmp_path: Path) -> Iterator[Any]:
    started: list[ServerProcess] = []

    def make(data_dir: Path | None = None, *extra: str) -> ServerProcess:
        srv = ServerProcess(data_dir or tmp_path / "data", *extra)
        started.append(srv)
        return srv.start()

    yield make
    for srv in started:
        srv.stop()


def login(url: str, email: str, password: str) -> httpx.Client:
    r = httpx.post(url + "/api/v1/auth/login", json={"email": email, "password": password})
    assert r.status_code == 200, r.text
    return httpx.Client(
        base_url=url, headers={"Authorization": f"Bearer {r.json()['access_token']}"}, timeout=60
    )


@pytest.fixture
def ww(tmp_path: Path) -> Iterator[Wattwatch]:
    """Services on a fresh data dir, not started (use ``client`` for a running app)."""
    instance = Wattwatch.open(Settings(data_dir=tmp_path / "data"), lock=True)
    yield instance
    instance.close()


@pytest.fixture
def client(ww: Wattwatch) -> Iterator[Any]:
    """An in-process HTTP client of a running app, logged in as the owner."""
    from fastapi.testclient import TestClient

    from wattwatch.web.server import create_api

    boot = ww.registry.bootstrap_owner()
    assert boot is not None
    with TestClient(create_api(ww)) as c:
        r = c.post("/api/v1/auth/login", json={"email": boot.email, "password": boot.password})
        c.headers["Authorization"] = f"Bearer {r.json()['access_token']}"
        yield c


@pytest.fixture
def pg_url() -> Iterator[str]:
    """The URL of a fresh, empty PostgreSQL database, dropped after the test."""
    from tests.pgdb import fresh_database

    with fresh_database() as url:
        yield url
