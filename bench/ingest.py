"""Ingest benchmark: HTTP batch upload of 1,000,000 readings from 1,000 devices to a real server.

Prints readings/s and the ratio to a bare SQLite ``executemany`` of the same rows into the same
table layout, measured in the same run. Usage: python bench/ingest.py [--devices N --per-device M]
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.conftest import ServerProcess, login


def bodies(n_devices: int, per_device: int, t0: int) -> list[list[dict[str, float | int]]]:
    out = []
    for d in range(n_devices):
        e = 1_000_000.0 + d
        rows = []
        for i in range(per_device):
            p = 100.0 + (i * 7 + d) % 2000
            e += p * 5 / 3600
            rows.append(
                {
                    "ts": t0 + i * 5000,
                    "power_w": p,
                    "energy_wh": round(e, 3),
                    "voltage_v": 230.0 + (i % 50) / 10,
                    "current_a": round(p / 230, 3),
                }
            )
        out.append(rows)
    return out


def bare_executemany(batches: list[list[dict[str, float | int]]]) -> float:
    """The same rows as stored rows, one executemany per batch, one commit per batch."""
    with tempfile.TemporaryDirectory() as tmp:
        conn = sqlite3.connect(os.path.join(tmp, "bare.db"), isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute(
            "CREATE TABLE readings (ch INTEGER NOT NULL, ts INTEGER NOT NULL, p INTEGER, "
            "e INTEGER, v INTEGER, a INTEGER, extra TEXT, PRIMARY KEY (ch, ts)) WITHOUT ROWID"
        )
        rows = [
            [
                (
                    ch + 1,
                    r["ts"],
                    round(r["power_w"] * 1000),
                    round(r["energy_wh"] * 1000),
                    round(r["voltage_v"] * 1000),
                    round(r["current_a"] * 1000),
                    None,
                )
                for r in batch
            ]
            for ch, batch in enumerate(batches)
        ]
        n = sum(len(b) for b in rows)
        started = time.perf_counter()
        for batch in rows:
            conn.execute("BEGIN")
            conn.executemany("INSERT INTO readings VALUES (?, ?, ?, ?, ?, ?, ?)", batch)
            conn.execute("COMMIT")
        elapsed = time.perf_counter() - started
        conn.close()
    return n / elapsed


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--devices", type=int, default=1000)
    ap.add_argument("--per-device", type=int, default=1000)
    ap.add_argument("--clients", type=int, default=8)
    args = ap.parse_args()
    t0 = (int(time.time() * 1000) // 3_600_000 - 24) * 3_600_000
    batches = bodies(args.devices, args.per_device, t0)
    n = args.devices * args.per_device
    print(f"readings: {n:,} from {args.devices:,} devices")

    with tempfile.TemporaryDirectory() as tmp:
        srv = ServerProcess(Path(tmp) / "data").start()
        try:
            api = login(srv.url, "owner@localhost", srv.password or "")
            tokens = []
            for d in range(args.devices):
                r = api.post("/api/v1/devices", json={"name": f"dev{d}", "uid": f"bench-{d}"})
                tokens.append(r.json()["token"])
            api.close()
            payloads = [orjson.dumps(b) for b in batches]

            def send(i: int) -> int:
                with httpx.Client(base_url=srv.url, timeout=300) as c:
                    r = c.post(
                        "/api/v1/telemetry",
                        content=payloads[i],
                        headers={
                            "Authorization": f"Bearer {tokens[i]}",
                            "Content-Type": "application/json",
                        },
                    )
                    r.raise_for_status()
                    return int(r.json()["accepted"])

            started = time.perf_counter()
            with ThreadPoolExecutor(args.clients) as pool:
                accepted = sum(pool.map(send, range(args.devices)))
            elapsed = time.perf_counter() - started
        finally:
            srv.stop()
    assert accepted == n, (accepted, n)
    http_rate = n / elapsed
    bare_rate = bare_executemany(batches)
    print(f"HTTP batch ingest:     {http_rate:12,.0f} readings/s ({elapsed:.1f} s)")
    print(f"bare SQLite executemany: {bare_rate:10,.0f} readings/s (same rows, same table)")
    print(f"ratio HTTP / bare:     {http_rate / bare_rate:12.2f}")


if __name__ == "__main__":
    main()
