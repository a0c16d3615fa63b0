"""End to end against a real ``wattwatch serve``: upload messy batches, read back exactly."""

from __future__ import annotations

import random
import subprocess
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.conftest import ServerProcess, login

HOUR = 3_600_000
N = 10_000


def make_readings(t0: int) -> list[dict[str, Any]]:
    """10,000 readings at 5 s with an energy counter that resets once (a power cut)."""
    rng = random.Random(7)
    out = []
    counter_mwh = 5_000_000
    for i in range(N):
        power = round(rng.uniform(50, 3000), 1)
        inc = rng.randint(60, 4200)  # mWh used since the previous reading
        counter_mwh = inc if i == 6000 else counter_mwh + inc  # reset: counter restarts at 0
        out.append(
            {
                "ts": t0 + i * 5000,
                "power_w": power,
                "energy_wh": counter_mwh / 1000,
                "voltage_v": round(rng.uniform(220, 240), 1),
                "current_a": round(power / 230, 3),
                "inc": 0 if i == 0 else inc,
            }
        )
    return out


BAD_ROWS: list[tuple[Any, str]] = [
    ({"ts": 1, "power_w": 10}, "before 2000"),
    ({"power_w": "lots"}, "must be a number"),
    ({"power_w": 10, "voltage_v": 5000}, "outside plausible range"),
    ({"power_w": 10, "watts": 3}, "unknown metric"),
    ("not an object", "JSON object"),
    ({"ts": 99_999_999_999_999, "power_w": 1}, "future"),
]


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_messy_upload_reads_back_exactly(
    tmp_path: Path, server_factory: Any, backend: str, request: pytest.FixtureRequest
) -> None:
    # The same test against both stores: serve on a data dir, or on a fresh PostgreSQL database.
    store_args: tuple[str, ...] = ()
    if backend == "postgresql":
        store_args = ("--database-url", request.getfixturevalue("pg_url"))
    srv: ServerProcess = server_factory(tmp_path / "data", *store_args)
    assert srv.password, srv.output
    api = login(srv.url, "owner@localhost", srv.password)
    site = api.post("/api/v1/sites", json={"name": "Lab", "timezone": "Europe/Madrid"}).json()
    created = api.post("/api/v1/devices", json={"name": "meter", "site_id": site["id"]})
    assert created.status_code == 201, created.text
    dev_id, token = created.json()["id"], created.json()["token"]
    dev = httpx.Client(base_url=srv.url, headers={"Authorization": f"Bearer {token}"}, timeout=60)

    import time

    t0 = (int(time.time() * 1000) // HOUR - 30) * HOUR
    readings = make_readings(t0)
    sent = [{k: v for k, v in r.items() if k != "inc"} for r in readings]
    batches = [sent[i : i + 500] for i in range(0, N, 500)]
    order = list(range(len(batches)))
    order[3], order[12] = order[12], order[3]  # two batches arrive out of order
    order[7], order[8] = order[8], order[7]
    rng = random.Random(1)
    totals = {"accepted": 0, "duplicates": 0, "rejected": 0}
    expected_dups = 0
    for n, b in enumerate(order):
        body: list[Any] = list(batches[b])
        if n > 0:  # resend 5 readings of an earlier batch: duplicates
            body.extend(rng.sample(batches[order[n - 1]], 5))
            expected_dups += 5
        bad_at = {}
        for bad, _ in BAD_ROWS:
            pos = rng.randrange(len(body) + 1)
            body.insert(pos, bad)
        for i, item in enumerate(body):
            for bad, reason in BAD_ROWS:
                if item is bad:
                    bad_at[i] = reason
        r = dev.post("/api/v1/telemetry", json=body)
        assert r.status_code == 200, r.text
        got = r.json()
        assert {x["index"]: x["reason"] for x in got["rejected"]}.keys() == bad_at.keys()
        for x in got["rejected"]:
            assert bad_at[x["index"]] in x["reason"], x
        totals["accepted"] += got["accepted"]
        totals["duplicates"] += got["duplicates"]
        totals["rejected"] += len(got["rejected"])
    # A whole batch retried (its answer was "lost"): all duplicates.
    again = dev.post("/api/v1/telemetry", json=batches[0]).json()
    assert again == {"accepted": 0, "duplicates": 500, "rejected": []}
    assert totals == {
        "accepted": N,
        "duplicates": expected_dups,
        "rejected": len(BAD_ROWS) * len(batches),
    }

    # Raw readings: exactly what was sent.
    raw = api.get(
        f"/api/v1/devices/{dev_id}/readings",
        params={"from": t0, "to": t0 + N * 5000, "interval": "raw"},
    ).json()
    assert raw["next"] is None
    assert len(raw["points"]) == N
    for want, got in zip(sent, raw["points"], strict=True):
        assert got["ts"] == want["ts"]
        assert got["channel"] == "mains"
        for k in ("power_w", "energy_wh", "voltage_v", "current_a"):
            assert got[k] == want[k], (k, want, got)

    # Pagination with a cursor walks the same points.
    page = api.get(
        f"/api/v1/devices/{dev_id}/readings",
        params={"from": t0, "to": t0 + N * 5000, "limit": 4000},
    ).json()
    walked = list(page["points"])
    while page["next"]:
        page = api.get(
            f"/api/v1/devices/{dev_id}/readings",
            params={"from": t0, "to": t0 + N * 5000, "limit": 4000, "cursor": page["next"]},
        ).json()
        walked.extend(page["points"])
    assert [p["ts"] for p in walked] == [p["ts"] for p in raw["points"]]

    # Hourly energy = counter difference (reset handled), to the Wh; counts exact.
    want_e: dict[int, int] = defaultdict(int)
    want_n: dict[int, int] = defaultdict(int)
    for r in readings:
        hour = r["ts"] // HOUR * HOUR
        want_e[hour] += r["inc"]
        want_n[hour] += 1
    hourly = api.get(
        f"/api/v1/devices/{dev_id}/readings",
        params={"from": t0, "to": t0 + N * 5000, "interval": "1h"},
    ).json()["points"]
    assert [p["ts"] for p in hourly] == sorted(want_e)
    for p in hourly:
        assert p["count"] == want_n[p["ts"]]
        assert abs(p["energy_wh"] - want_e[p["ts"]] / 1000) < 1e-6
    in_hour = [r["power_w"] for r in readings if r["ts"] // HOUR * HOUR == hourly[0]["ts"]]
    assert hourly[0]["power_w_max"] == max(in_hour)
    assert hourly[0]["power_w_min"] == min(in_hour)

    total_wh = sum(want_e.values()) / 1000
    for interval in ("1m", "1d", "1w", "1mo"):
        pts = api.get(
            f"/api/v1/devices/{dev_id}/readings",
            params={
                "from": t0 - 40 * 86_400_000,
                "to": t0 + N * 5000 + 86_400_000,
                "interval": interval,
            },
        ).json()["points"]
        assert sum(p["count"] for p in pts) == N, interval
        assert abs(sum(p["energy_wh"] for p in pts) - total_wh) < 1e-3, interval

    energy = api.get(
        f"/api/v1/sites/{site['id']}/energy",
        params={"from": t0 - 86_400_000, "to": t0 + 2 * 86_400_000, "interval": "1d"},
    ).json()
    assert abs(sum(p["energy_wh"] for p in energy["points"]) - total_wh) < 1e-3

    # Restart: everything is still there.
    api.close()
    dev.close()
    srv.stop()
    srv2: ServerProcess = server_factory(tmp_path / "data", *store_args)
    assert srv2.password is None  # the owner exists already; no new password
    api2 = login(srv2.url, "owner@localhost", srv.password)
    raw2 = api2.get(
        f"/api/v1/devices/{dev_id}/readings",
        params={"from": t0, "to": t0 + N * 5000, "metrics": "power_w"},
    ).json()["points"]
    assert len(raw2) == N
    assert set(raw2[0]) == {"ts", "channel", "power_w"}
    api2.close()
    if backend == "postgresql":
        return  # many processes may write one PostgreSQL database: nothing to refuse

    # A second process on the same data dir is refused with a clear error.
    second = subprocess.run(
        [
            sys.executable,
            "-m",
            "wattwatch",
            "serve",
            "--data-dir",
            str(tmp_path / "data"),
            "--http-port",
            "0",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert second.returncode != 0
    assert "in use by pid" in (second.stdout + second.stderr)
