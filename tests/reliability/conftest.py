"""Reliability fixtures: a ``wattwatch serve`` that is kill -9'd and restarted on the same ports
and data dir, device provisioning over the API, and an audit of what the store really holds.

The audit reads the database directly (sqlite3 / psycopg), not through the API: it must see
exactly what survived, including rollup rows the API would only show summed.
"""

from __future__ import annotations

import contextlib
import os
import random
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO, Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from tests.conftest import login

from wattwatch.store.base import MAX_INTEGRATION_GAP_MS

LONG = os.environ.get("WATTWATCH_LONG") == "1"

# A standby interpreter has imported what serve needs and waits for one line on stdin before
# it runs ``wattwatch serve``: a restart then costs the server's own start-up (store open,
# broker, uvicorn), not the seconds its imports take on a loaded machine. It is the same entry
# point as ``python -m wattwatch serve``; an empty line (or EOF) makes it exit without serving.
_STANDBY = """\
import importlib
import sys
from wattwatch.cli import app
for name in ("uvicorn", "uvloop", "wattwatch.web.server", "wattwatch.ingest.mqtt",
             "wattwatch.store.sqlite", "wattwatch.store.postgres", "psycopg",
             "pandas", "sklearn"):
    try:
        importlib.import_module(name)  # what serve imports lazily
    except ImportError:
        pass
if sys.stdin.readline().strip() != "go":
    sys.exit(0)
app(sys.argv[1:], prog_name="wattwatch")
"""


def _ephemeral_range() -> tuple[int, int]:
    try:
        lo, hi = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(lo), int(hi)
    except (OSError, ValueError):
        return 32768, 60999


def stable_port() -> int:
    """A free port *below* the ephemeral range, for a server that is restarted on it.

    While the server is down, clients keep connecting to its port; a connect to a local port in
    the ephemeral range can pick that same port as its source and connect to itself (TCP
    simultaneous open), and the restarted server could then not bind. Ports the kernel never
    hands out as source ports cannot be taken that way.
    """
    lo, _ = _ephemeral_range()
    rng = random.Random()
    for _ in range(200):
        port = rng.randrange(max(1024, lo - 12000), lo)
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port below the ephemeral range")


class CrashableServer:
    """``wattwatch serve`` on fixed ports and one data dir, killed with SIGKILL and restarted.

    ``start`` waits for ``/healthz``; every start after a kill is a check that the data dir
    opens and that the killed process's lock file does not block it.
    """

    def __init__(self, data_dir: Path, *extra: str, log_path: Path | None = None) -> None:
        self.data_dir = data_dir
        self.extra = extra
        self.http_port = stable_port()
        self.mqtt_port = stable_port()
        while self.mqtt_port == self.http_port:
            self.mqtt_port = stable_port()
        self.log_path = log_path or data_dir.parent / f"serve-{self.http_port}.log"
        self._log: IO[str] = open(self.log_path, "a+")  # noqa: SIM115 - closed by close()
        self.proc: subprocess.Popen[str] | None = None
        self._standby: subprocess.Popen[str] | None = None
        self.password: str | None = None
        self.kills = 0
        self.start_s: list[float] = []  # kill (or first start) → /healthz answers
        self.sqlite = not any(a.startswith("postgresql") for a in extra)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def lock_path(self) -> Path:
        return self.data_dir / "wattwatch.lock"

    def _spawn_standby(self) -> subprocess.Popen[str]:
        env = {
            **os.environ,
            "COLUMNS": "200",
            "WATTWATCH_LOG_LEVEL": "warning",
            "WATTWATCH_MQTT_PORT": str(self.mqtt_port),
        }
        return subprocess.Popen(
            [
                sys.executable,
                "-c",
                _STANDBY,
                "serve",
                "--data-dir",
                str(self.data_dir),
                "--http-port",
                str(self.http_port),
                *self.extra,
            ],
            stdin=subprocess.PIPE,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
        )

    def start(self, timeout: float = 60.0) -> CrashableServer:
        assert self.proc is None or self.proc.poll() is not None, "already running"
        began = time.monotonic()
        proc = self._standby or self._spawn_standby()
        self._standby = None
        assert proc.stdin is not None
        proc.stdin.write("go\n")
        proc.stdin.flush()
        self.proc = proc
        # The next start's interpreter warms up while this one serves.
        self._standby = self._spawn_standby()
        deadline = began + timeout
        with httpx.Client(timeout=1) as probe:
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(
                        f"server exited ({proc.returncode}):\n{self.output()[-4000:]}"
                    )
                try:
                    if probe.get(self.url + "/healthz").status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"server did not start:\n{self.output()[-4000:]}")
                time.sleep(0.02)
        self.start_s.append(time.monotonic() - began)
        if self.sqlite:
            holder = self.lock_path.read_text().strip()
            assert holder == f"pid {proc.pid}", (holder, proc.pid)
        if self.password is None:
            m = re.search(r"password:\s+(\S+)", self.output())
            self.password = m.group(1) if m else None
        return self

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs, nothing is flushed by us."""
        assert self.proc is not None
        pid = self.proc.pid
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()
        self._close_stdin(self.proc)
        self.kills += 1
        if self.sqlite:
            # The dead process's lock file is still there, naming it: only the flock is gone.
            assert self.lock_path.read_text().strip() == f"pid {pid}"

    def output(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        """A clean stop (SIGTERM), and the standby told to exit."""
        if self._standby is not None:
            _end_standby(self._standby)
            self._standby = None
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc is not None:
            self._close_stdin(self.proc)

    @staticmethod
    def _close_stdin(proc: subprocess.Popen[str]) -> None:
        if proc.stdin is not None and not proc.stdin.closed:
            with contextlib.suppress(OSError):
                proc.stdin.close()

    def close(self) -> None:
        self.stop()
        self._log.close()


def _end_standby(proc: subprocess.Popen[str]) -> None:
    try:
        assert proc.stdin is not None
        proc.stdin.close()  # EOF: the standby exits without serving
        proc.wait(timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        proc.kill()
        proc.wait()


@pytest.fixture
def crashable_server(tmp_path: Path) -> Iterator[Any]:
    """Factory: ``crashable_server(data_dir, *serve_args)`` → a started ``CrashableServer``."""
    made: list[CrashableServer] = []

    def make(data_dir: Path | None = None, *extra: str) -> CrashableServer:
        srv = CrashableServer(data_dir or tmp_path / "data", *extra)
        made.append(srv)
        return srv.start()

    yield make
    for srv in made:
        srv.close()


# -- provisioning ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Device:
    id: int
    uid: str
    token: str


def provision(
    srv: CrashableServer, uids: list[str], timezone: str = "Europe/Madrid"
) -> list[Device]:
    """A site in ``timezone`` and one device per uid on it (default channel ``mains``)."""
    assert srv.password, srv.output()
    api = login(srv.url, "owner@localhost", srv.password)
    try:
        site = api.post("/api/v1/sites", json={"name": "Plant", "timezone": timezone})
        assert site.status_code == 201, site.text
        out = []
        for uid in uids:
            r = api.post(
                "/api/v1/devices",
                json={"name": uid, "uid": uid, "site_id": site.json()["id"]},
            )
            assert r.status_code == 201, r.text
            out.append(Device(r.json()["id"], uid, r.json()["token"]))
        return out
    finally:
        api.close()


# -- what the store holds --------------------------------------------------------------------

# A reading as the tests know it: (device uid, channel name, ts) → (power mW, energy mWh).
Key = tuple[str, str, int]
Values = tuple[int | None, int | None]


def stored_value(power_w: float | None, energy_wh: float | None) -> Values:
    """The values as the store keeps them (milli-units, rounded)."""
    return (
        None if power_w is None else round(power_w * 1000),
        None if energy_wh is None else round(energy_wh * 1000),
    )


@dataclass
class Snapshot:
    """Readings and rollups of the store, read in one transaction."""

    channels: dict[int, tuple[str, str, str]]  # ch → (uid, channel name, site timezone)
    readings: list[tuple[int, int, int | None, int | None]]  # (ch, ts, p, e)
    rollups: dict[str, dict[tuple[int, int], tuple[Any, ...]]]  # table → (ch, bucket) → row
    raw_doubles: int  # (ch, ts) keys stored more than once (the primary key forbids it)


_CHANNELS_SQL = (
    "SELECT c.id, d.uid, c.name, COALESCE(s.timezone, 'UTC') FROM channels c "
    "JOIN devices d ON d.id = c.device_id LEFT JOIN sites s ON s.id = d.site_id"
)


def snapshot(store: str, uids: set[str] | None = None) -> Snapshot:
    """Read the store at ``store`` (a data dir path or a postgresql:// URL) directly.

    ``uids``: only these devices' channels (the store may hold others).
    """
    if store.startswith("postgresql"):
        import psycopg

        conn: Any = psycopg.connect(store, autocommit=True)
        conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
    else:
        conn = sqlite3.connect(Path(store) / "wattwatch.db", isolation_level=None, timeout=60)
        conn.execute("BEGIN")  # one WAL snapshot for every read below
    try:
        channels = {
            r[0]: (r[1], r[2], r[3])
            for r in conn.execute(_CHANNELS_SQL).fetchall()
            if uids is None or r[1] in uids
        }
        wanted = set(channels)
        readings = [
            (r[0], r[1], r[2], r[3])
            for r in conn.execute("SELECT ch, ts, p, e FROM readings").fetchall()
            if r[0] in wanted
        ]
        rollups = {}
        for table in ("rollup_1m", "rollup_1h", "rollup_1d"):
            rollups[table] = {
                (r[0], r[1]): tuple(r[2:])
                for r in conn.execute(
                    f"SELECT ch, bucket, n, pn, psum, pmin, pmax, e FROM {table}"
                ).fetchall()
                if r[0] in wanted
            }
        doubles = sum(
            r[2] - 1
            for r in conn.execute(
                "SELECT ch, ts, count(*) FROM readings GROUP BY ch, ts HAVING count(*) > 1"
            ).fetchall()
            if r[0] in wanted
        )
        conn.execute("COMMIT")
    finally:
        conn.close()
    return Snapshot(channels, readings, rollups, doubles)


def integrity_ok(data_dir: Path) -> str:
    conn = sqlite3.connect(data_dir / "wattwatch.db")
    try:
        return str(conn.execute("PRAGMA integrity_check").fetchone()[0])
    finally:
        conn.close()


def _energy_mwh(
    prev: tuple[int, int | None, int | None] | None, cur: tuple[int, int | None, int | None]
) -> int:
    """Energy attributed to ``cur`` (docs/reliability.md, DESIGN §3), written out again here
    so the check does not reuse the code it checks."""
    if prev is None:
        return 0
    (pts, pp, pe), (ts, p, e) = prev, cur
    if e is not None and pe is not None:
        return e - pe if e >= pe else e  # a counter that went back was reset
    dt = ts - pts
    if pp is None or p is None or not 0 < dt <= MAX_INTEGRATION_GAP_MS:
        return 0
    return round((pp + p) * dt / 7_200_000)


def _local_midnight_ms(tz: str, ts_ms: int) -> int:
    local = datetime.fromtimestamp(ts_ms / 1000, ZoneInfo(tz))
    return int(local.replace(hour=0, minute=0, second=0, microsecond=0).timestamp() * 1000)


def expected_rollups(snap: Snapshot) -> dict[str, dict[tuple[int, int], tuple[Any, ...]]]:
    """The rollup rows the raw readings imply: (n, pn, psum, pmin, pmax, e) per bucket."""
    per_ch: dict[int, list[tuple[int, int | None, int | None]]] = defaultdict(list)
    for ch, ts, p, e in snap.readings:
        per_ch[ch].append((ts, p, e))
    acc: dict[str, dict[tuple[int, int], list[Any]]] = {
        t: {} for t in ("rollup_1m", "rollup_1h", "rollup_1d")
    }
    for ch, points in per_ch.items():
        points.sort()
        tz = snap.channels[ch][2]
        prev = None
        for point in points:
            ts, p, _ = point
            de = _energy_mwh(prev, point)
            prev = point
            for table, bucket in (
                ("rollup_1m", ts - ts % 60_000),
                ("rollup_1h", ts - ts % 3_600_000),
                ("rollup_1d", _local_midnight_ms(tz, ts)),
            ):
                a = acc[table].setdefault((ch, bucket), [0, 0, 0, None, None, 0])
                a[0] += 1
                a[5] += de
                if p is not None:
                    a[1] += 1
                    a[2] += p
                    a[3] = p if a[3] is None else min(a[3], p)
                    a[4] = p if a[4] is None else max(a[4], p)
    return {t: {k: tuple(v) for k, v in rows.items()} for t, rows in acc.items()}


@dataclass
class Audit:
    """Acknowledged readings against what the store holds."""

    acknowledged: int
    stored: int
    lost: list[Key] = field(default_factory=list)  # acknowledged, not stored
    doubled: int = 0  # raw doubles + readings counted more than once in rollups
    unexpected: list[Key] = field(default_factory=list)  # stored, never sent
    wrong_values: list[Key] = field(default_factory=list)
    rollup_mismatches: list[str] = field(default_factory=list)

    def problems(self) -> list[str]:
        out = []
        if self.lost:
            out.append(f"{len(self.lost)} acknowledged readings lost, e.g. {self.lost[:5]}")
        if self.doubled:
            out.append(f"{self.doubled} readings doubled")
        if self.unexpected:
            out.append(f"{len(self.unexpected)} stored readings never sent: {self.unexpected[:5]}")
        if self.wrong_values:
            out.append(
                f"{len(self.wrong_values)} stored with other values: {self.wrong_values[:5]}"
            )
        out.extend(self.rollup_mismatches[:10])
        return out


def audit(snap: Snapshot, sent: dict[Key, Values], acknowledged: set[Key]) -> Audit:
    """Check acknowledged ⊆ stored ⊆ sent, values as sent, and every rollup row = raw."""
    stored: dict[Key, Values] = {}
    for ch, ts, p, e in snap.readings:
        uid, name, _ = snap.channels[ch]
        stored[(uid, name, ts)] = (p, e)
    result = Audit(acknowledged=len(acknowledged), stored=len(stored))
    result.lost = sorted(k for k in acknowledged if k not in stored)
    result.unexpected = sorted(k for k in stored if k not in sent)
    result.wrong_values = sorted(k for k, v in stored.items() if k in sent and sent[k] != v)
    result.doubled = snap.raw_doubles
    want = expected_rollups(snap)
    for table, rows in want.items():
        got = snap.rollups[table]
        for key in sorted(set(rows) | set(got)):
            w, g = rows.get(key), got.get(key)
            if w != g:
                result.rollup_mismatches.append(f"{table} {key}: raw gives {w}, stored {g}")
                if table == "rollup_1m":
                    extra = (g[0] if g else 0) - (w[0] if w else 0)
                    result.doubled += max(0, extra)
    return result
