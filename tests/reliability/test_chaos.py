"""Idempotent batch upload under chaos: a hypothesis state machine against a real server.

The server is a real ``wattwatch serve`` subprocess, and "kill" is SIGKILL: an in-process app
whose store is closed uncleanly would still run our shutdown code (the engine, the pipeline's
executor), and what matters is what a dead process leaves behind. With a warm standby
interpreter (tests/reliability/conftest.py) a restart costs a second or two, cheap enough.

Each example is one new device. Rules: send a batch (a random stretch of the device's
readings, plus readings of earlier batches: overlaps), in order or shuffled, and either read
the answer, drop the connection before any answer, or read the answer and forget it; retry an
unacknowledged batch (shuffled or not); kill -9 the server, with or without a batch in flight,
and restart it. After every step, the store (read directly, in one snapshot) holds every
acknowledged reading once with the values sent, nothing that was not sent, and rollups equal
to what its raw readings give. At the end every batch is retried until acknowledged, and the
store then holds exactly the readings sent.

CI: a few short examples. ``WATTWATCH_LONG=1``: many longer ones.
"""

from __future__ import annotations

import random
import socket
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from tests.reliability.conftest import (
    LONG,
    CrashableServer,
    Key,
    Values,
    audit,
    integrity_ok,
    provision,
    snapshot,
    stored_value,
)

UNIVERSE = 240  # readings per device (one per second)
HOUR_MS = 3_600_000


def post_batch(srv: CrashableServer, token: str, body: list[dict[str, Any]]) -> bool:
    """Upload and read the answer: True when the whole batch is acknowledged."""
    try:
        r = httpx.post(
            srv.url + "/api/v1/telemetry",
            json=body,
            headers={"Authorization": f"Bearer {token}"},
            timeout=60,
        )
    except httpx.TransportError:
        return False
    if r.status_code != 200:
        assert r.status_code >= 500 or r.status_code == 429, r.text  # never our fault
        return False
    got = r.json()
    assert got["rejected"] == [], got
    assert got["accepted"] + got["duplicates"] == len(body), got
    return True


def post_and_hang_up(
    srv: CrashableServer, token: str, body: list[dict[str, Any]], wait_s: float
) -> None:
    """Send the whole request, then close the connection without reading any answer."""
    data = orjson.dumps(body)
    head = (
        "POST /api/v1/telemetry HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Authorization: Bearer {token}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(data)}\r\nConnection: close\r\n\r\n"
    ).encode()
    try:
        with socket.create_connection(("127.0.0.1", srv.http_port), timeout=10) as s:
            s.sendall(head + data)
            time.sleep(wait_s)
    except OSError:
        pass


def chaos_machine(srv: CrashableServer, t0: int, max_kills: int) -> type[RuleBasedStateMachine]:
    counter = iter(range(1_000_000))

    class UploadChaos(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            self.uid = f"chaos-{next(counter)}-{random.randrange(1 << 30):x}"
            self.token = ""
            rng = random.Random(self.uid)
            self.readings: list[dict[str, Any]] = []
            energy = rng.randint(0, 5_000_000)
            for i in range(UNIVERSE):
                inc = rng.randint(1, 900)
                energy = inc if i == UNIVERSE // 2 else energy + inc  # one counter reset
                self.readings.append(
                    {
                        "ts": t0 + i * 1000,
                        "power_w": round(rng.uniform(1, 3000), 1),
                        "energy_wh": energy / 1000,
                    }
                )
            self.values: dict[Key, Values] = {
                self.key(i): stored_value(r["power_w"], r["energy_wh"])
                for i, r in enumerate(self.readings)
            }
            self.sent: dict[Key, Values] = {}  # what went out at least once
            self.acked: set[Key] = set()
            self.pending: list[list[int]] = []  # batches without an answer
            self.kills = 0

        def key(self, i: int) -> Key:
            return (self.uid, "mains", self.readings[i]["ts"])

        @initialize()
        def make_device(self) -> None:
            (device,) = provision(srv, [self.uid])
            self.token = device.token

        def body(self, batch: list[int]) -> list[dict[str, Any]]:
            for i in batch:
                self.sent[self.key(i)] = self.values[self.key(i)]
            return [self.readings[i] for i in batch]

        def settle(self, batch: list[int], acknowledged: bool) -> None:
            if acknowledged:
                self.acked.update(self.key(i) for i in batch)
            else:
                self.pending.append(batch)

        @rule(
            start=st.integers(0, UNIVERSE - 1),
            length=st.integers(1, 80),
            overlap=st.integers(0, 20),
            shuffle=st.booleans(),
            fate=st.sampled_from(["answer", "hang_up", "forget_answer"]),
            wait_s=st.sampled_from([0.0, 0.01, 0.2]),
            seed=st.integers(0, 1 << 16),
        )
        def send(
            self,
            start: int,
            length: int,
            overlap: int,
            shuffle: bool,
            fate: str,
            wait_s: float,
            seed: int,
        ) -> None:
            rng = random.Random(seed)
            batch = list(range(start, min(UNIVERSE, start + length)))
            earlier = sorted({i for i in range(UNIVERSE) if self.key(i) in self.sent} - set(batch))
            batch += rng.sample(earlier, min(overlap, len(earlier)))
            if shuffle:
                rng.shuffle(batch)
            body = self.body(batch)
            if fate == "answer":
                self.settle(batch, post_batch(srv, self.token, body))
            elif fate == "hang_up":
                post_and_hang_up(srv, self.token, body, wait_s)
                self.settle(batch, False)
            else:  # the answer came and was lost on the way back: the client never saw it
                post_batch(srv, self.token, body)
                self.settle(batch, False)

        @precondition(lambda self: bool(self.pending))
        @rule(pick=st.integers(0, 1 << 16), shuffle=st.booleans())
        def retry(self, pick: int, shuffle: bool) -> None:
            batch = self.pending.pop(pick % len(self.pending))
            if shuffle:
                random.Random(pick).shuffle(batch)
            self.settle(batch, post_batch(srv, self.token, self.body(batch)))

        @precondition(lambda self: self.kills < max_kills)
        @rule(in_flight=st.booleans(), delay_s=st.floats(0, 0.15), start=st.integers(0, 200))
        def kill_and_restart(self, in_flight: bool, delay_s: float, start: int) -> None:
            outcome: dict[str, bool] = {}
            sender = None
            batch = list(range(start, min(UNIVERSE, start + 40)))
            if in_flight:
                body = self.body(batch)
                sender = threading.Thread(
                    target=lambda: outcome.update(ok=post_batch(srv, self.token, body))
                )
                sender.start()
                time.sleep(delay_s)
            srv.kill()
            self.kills += 1
            if sender is not None:
                sender.join(60)
                self.settle(batch, outcome.get("ok", False))
            srv.start()

        @invariant()
        def store_matches_acknowledgements(self) -> None:
            if not self.token:
                return
            result = audit(snapshot(str(srv.data_dir), {self.uid}), self.sent, self.acked)
            assert result.problems() == [], result.problems()

        def teardown(self) -> None:
            if not self.token:
                return
            # Every batch retried until acknowledged: then stored = sent, exactly.
            for batch in self.pending:
                for _ in range(20):
                    if post_batch(srv, self.token, self.body(batch)):
                        self.acked.update(self.key(i) for i in batch)
                        break
                    time.sleep(0.2)
            result = audit(snapshot(str(srv.data_dir), {self.uid}), self.sent, self.acked)
            assert result.problems() == [], result.problems()
            assert result.stored == len(self.sent) == len(self.acked)
            stats["examples"] += 1
            stats["kills"] += self.kills
            stats["acknowledged"] += len(self.acked)

    return UploadChaos


stats: dict[str, int] = {"examples": 0, "kills": 0, "acknowledged": 0}


@pytest.mark.timeout(3600 if LONG else 300)
def test_idempotent_upload_under_chaos(tmp_path: Path, crashable_server: Any) -> None:
    srv: CrashableServer = crashable_server(tmp_path / "data")
    t0 = (int(time.time() * 1000) // HOUR_MS - 2) * HOUR_MS
    machine = chaos_machine(srv, t0, max_kills=4 if LONG else 2)
    began = time.monotonic()
    run_state_machine_as_test(
        machine,
        settings=settings(
            max_examples=60 if LONG else 6,
            stateful_step_count=40 if LONG else 10,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        ),
    )
    assert integrity_ok(srv.data_dir) == "ok"
    print(f"\nchaos: {stats}, restarts {srv.kills}, {time.monotonic() - began:.1f} s")
    assert srv.kills >= 1
