"""Large JSON uploads decoded in a decoder process (``WATTWATCH_DECODE_PROCESSES=1``): the
same answers and the same stored readings as in-process decoding, a batch with something to
reject falls back to the in-process path (every reason named, the rest kept), and a server
killed with SIGKILL leaves no decoder process behind."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from tests.conftest import login

from wattwatch.ingest.pipeline import DECODE_ELSEWHERE_BYTES

T0 = (int(time.time() * 1000) // 3_600_000 - 30) * 3_600_000


def children_of(pid: int) -> set[int]:
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            found.add(int(entry.name))
    return found


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def batch(start: int, n: int) -> list[dict[str, Any]]:
    return [
        {
            "ts": T0 + (start + i) * 1000,
            "power_w": 100.0 + (start + i) % 97,
            "energy_wh": 5000.0 + (start + i) * 0.03,
            "voltage_v": 229.5,
        }
        for i in range(n)
    ]


def with_decoder(
    server_factory: Any, monkeypatch: pytest.MonkeyPatch, uid: str
) -> tuple[Any, httpx.Client, dict[str, Any]]:
    """A server with one decoder process, the owner's client and a new device."""
    monkeypatch.setenv("WATTWATCH_DECODE_PROCESSES", "1")
    srv = server_factory()
    api = login(srv.url, "owner@localhost", srv.password)
    device = api.post("/api/v1/devices", json={"name": "panel", "uid": uid}).json()
    return srv, api, device


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")
def test_uploads_decoded_elsewhere_store_what_in_process_decoding_stores(
    server_factory: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    srv, api, device = with_decoder(server_factory, monkeypatch, "dec-1")
    headers = {"Authorization": f"Bearer {device['token']}", "Content-Type": "application/json"}

    def upload(body: list[dict[str, Any]]) -> dict[str, Any]:
        data = orjson.dumps(body)
        assert len(data) >= DECODE_ELSEWHERE_BYTES  # large enough to go to the decoder
        r = api.post("/api/v1/telemetry", content=data, headers=headers)
        assert r.status_code == 200, r.text
        return dict(r.json())

    first = batch(0, 2000)
    assert upload(first) == {"accepted": 2000, "duplicates": 0, "rejected": []}
    decoders = children_of(srv.proc.pid)
    assert decoders, "no decoder process was started"
    assert upload(first)["duplicates"] == 2000  # the same batch again: all duplicates
    # Something to reject: decoded in-process, every reason named, the rest kept.
    second = batch(2000, 2000)
    second[7]["voltage_v"] = 5000.0
    second[9]["power_w"] = "12"
    answer = upload(second)
    assert answer["accepted"] == 1998 and answer["duplicates"] == 0
    assert [r["index"] for r in answer["rejected"]] == [7, 9]
    assert "voltage_v" in answer["rejected"][0]["reason"]
    # A large body that is not JSON: the same clear 4xx as without a decoder.
    r = api.post("/api/v1/telemetry", content=b"[" * DECODE_ELSEWHERE_BYTES, headers=headers)
    assert r.status_code == 422 and "not valid JSON" in r.text, r.text
    # Read back: exactly what was sent, in stored units.
    r = api.get(
        f"/api/v1/devices/{device['id']}/readings",
        params={"from": T0, "to": T0 + 4000 * 1000, "limit": 5000},
    )
    points = r.json()["points"]
    assert len(points) == 3998
    sent = {p["ts"]: p for p in first + second if p is not second[7] and p is not second[9]}
    for point in points:
        want = sent[point["ts"]]
        assert point["power_w"] == want["power_w"] and point["voltage_v"] == want["voltage_v"]
        assert point["energy_wh"] == pytest.approx(want["energy_wh"], abs=0.001)
    api.close()
    # SIGKILL: the decoder process sees its parent gone and exits.
    srv.proc.send_signal(signal.SIGKILL)
    srv.proc.wait()
    deadline = time.monotonic() + 20
    while any(alive(pid) for pid in decoders) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not any(alive(pid) for pid in decoders), "decoder process outlived the server"
    assert os.getpid() not in decoders


def test_a_stopped_server_stops_its_decoder(
    server_factory: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    srv, api, device = with_decoder(server_factory, monkeypatch, "dec-2")
    r = api.post(
        "/api/v1/telemetry",
        content=orjson.dumps(batch(0, 2000)),
        headers={"Authorization": f"Bearer {device['token']}"},
    )
    assert r.json()["accepted"] == 2000
    decoders = children_of(srv.proc.pid)
    assert decoders
    api.close()
    log = srv.data_dir.parent / f"serve-{srv.http_port}.log"
    srv.stop()  # SIGTERM: finish, then exit
    assert srv.proc.returncode == 0, log.read_text()[-3000:]
    assert not any(alive(pid) for pid in decoders)
