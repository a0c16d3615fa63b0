"""Ingest benchmark: HTTP batch upload of 1,000,000 readings from 1,000 devices to a real server.

Prints readings/s of the HTTP path and of the store write path (``write_readings`` in pipeline
sized batches), and the ratio to a bare bulk insert of the same rows into the same table layout
measured in the same run (SQLite ``executemany``; PostgreSQL ``COPY``).
Usage: python bench/ingest.py [--devices N --per-device M] [--database-url postgresql://…]
(the PostgreSQL database should be empty; bench/backends.py makes a fresh one and runs both).

``--rules N`` adds the alert evaluation overhead: N active alert rules (one per device, a mix of
every reading-driven kind, see ``rule_bodies``), measured on the in-process pipeline path
(store + pipeline + alert engine, no HTTP: steadier on a shared machine) with none and with N
rules in alternating rounds, and on the HTTP path with N rules against the run without.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sqlite3
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.httpload import post, send_all
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


def bare_copy(batches: list[list[dict[str, float | int]]], database_url: str) -> float:
    """PostgreSQL: the same rows binary-COPYed into a bare partitioned table in 20,000-row
    transactions (what the store does for readings, minus dedupe, rollups and locks)."""
    import psycopg

    from wattwatch.store.postgres import libpq_url

    ts_all = [r["ts"] for b in batches for r in b]
    lo, hi = min(ts_all) - 86_400_000, max(ts_all) + 86_400_000
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
    # The store's batch size (the pipeline's group commit), so both pay the same commits.
    flat = [r for b in rows for r in b]
    rows = [flat[i : i + 20_000] for i in range(0, len(flat), 20_000)]
    n = len(flat)
    with psycopg.connect(libpq_url(database_url), autocommit=True) as conn:
        conn.execute("DROP SCHEMA IF EXISTS bench_bare CASCADE")
        conn.execute("CREATE SCHEMA bench_bare")
        conn.execute(
            "CREATE TABLE bench_bare.readings (ts bigint NOT NULL, e bigint, "
            "ch integer NOT NULL, p integer, v integer, a integer, extra text, "
            "PRIMARY KEY (ch, ts)) PARTITION BY RANGE (ts)"
        )
        conn.execute(
            f"CREATE TABLE bench_bare.readings_p PARTITION OF bench_bare.readings "
            f"FOR VALUES FROM ({lo}) TO ({hi})"
        )
        started = time.perf_counter()
        for batch in rows:
            with (
                conn.transaction(),
                conn.cursor() as cur,
                cur.copy(
                    "COPY bench_bare.readings (ch, ts, p, e, v, a, extra) FROM STDIN "
                    "(FORMAT BINARY)"
                ) as copy,
            ):
                copy.set_types(["int4", "int8", "int4", "int8", "int4", "int4", "text"])
                for row in batch:
                    copy.write_row(row)
        elapsed = time.perf_counter() - started
        conn.execute("DROP SCHEMA bench_bare CASCADE")
    return n / elapsed


def store_write_path(
    batches: list[list[dict[str, float | int]]], database_url: str | None, batch_rows: int
) -> float:
    """readings/s of ``store.write_readings`` (dedupe, rollups, insert) in pipeline batches."""
    from wattwatch.app import open_store
    from wattwatch.config import Settings
    from wattwatch.store.base import StoredRow

    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(data_dir=Path(tmp), database_url=database_url)
        store = open_store(settings, lock=True)
        try:
            db = store.registry
            org = db.create_org("bench")
            chans = []
            for d in range(len(batches)):
                uid = f"store-bench-{d}"
                values = {
                    "uid": uid, "org_id": org, "name": uid, "kind": "monitor",
                    "protocol": "native", "topic": uid, "identifiers": {}, "key_map": {},
                }  # fmt: skip
                chans.append(db.channel_ids_of(db.create_device(values, ["mains"]))["mains"])
            rows = [
                StoredRow(
                    ch,
                    int(r["ts"]),
                    round(r["power_w"] * 1000),
                    round(r["energy_wh"] * 1000),
                    round(r["voltage_v"] * 1000),
                    round(r["current_a"] * 1000),
                    None,
                )
                for ch, batch in zip(chans, batches, strict=True)
                for r in batch
            ]
            started = time.perf_counter()
            for i in range(0, len(rows), batch_rows):
                assert store.write_readings(rows[i : i + batch_rows]) == []
            elapsed = time.perf_counter() - started
        finally:
            store.close()
    return len(rows) / elapsed


def run(
    n_devices: int,
    per_device: int,
    clients: int,
    database_url: str | None,
    rules: int = 0,
    rounds: int = 2,
    *,
    store_only: bool = False,
) -> dict[str, float]:
    """Measure one backend (SQLite in a temporary data dir, or the given PostgreSQL database)."""
    t0 = (int(time.time() * 1000) // 3_600_000 - 24) * 3_600_000
    batches = bodies(n_devices, per_device, t0)
    n = n_devices * per_device
    backend = "PostgreSQL" if database_url else "SQLite"
    print(f"[{backend}] readings: {n:,} from {n_devices:,} devices")
    http_rate = float("nan")
    if not store_only:
        http_rate, elapsed = http_ingest(batches, clients, database_url)
        print(f"[{backend}] HTTP batch ingest:   {http_rate:12,.0f} readings/s ({elapsed:.1f} s)")
    # Same database, new devices: the write path starts from empty channels as HTTP did.
    store_rate = store_write_path(batches, database_url, 20_000)
    print(f"[{backend}] store write path:    {store_rate:12,.0f} readings/s (20,000-row batches)")
    if database_url:
        bare_rate = bare_copy(batches, database_url)
        label = "bare COPY"
    else:
        bare_rate = bare_executemany(batches)
        label = "bare executemany"
    print(f"[{backend}] {label + ':':20s} {bare_rate:12,.0f} readings/s (same rows, same table)")
    if not store_only:
        print(f"[{backend}] ratio HTTP / bare:   {http_rate / bare_rate:12.2f}")
    print(f"[{backend}] ratio store / bare:  {store_rate / bare_rate:12.2f}")
    out = {"http": http_rate, "store": store_rate, "bare": bare_rate}
    if rules:
        # A fresh database per run: PostgreSQL runs need the SQLite path here.
        base, with_rules = alert_overhead(batches, rules, None, clients, rounds)
        print(f"[SQLite] pipeline path, no rules:     {base:12,.0f} readings/s (best of {rounds})")
        print(f"[SQLite] pipeline path, {rules:,} rules: {with_rules:12,.0f} readings/s")
        print(
            f"[SQLite] alert overhead (pipeline):  {(1 - with_rules / base) * 100:11.1f} % slower"
        )
        http_rules, _ = http_ingest(batches, clients, database_url, rules)
        print(f"[{backend}] HTTP, {rules:,} rules:       {http_rules:12,.0f} readings/s")
        slower = (1 - http_rules / http_rate) * 100
        print(f"[{backend}] alert overhead (HTTP):    {slower:11.1f} % slower")
        out.update(pipeline=base, pipeline_rules=with_rules, http_rules=http_rules)
    return out


def rule_bodies(n_rules: int, device_ids: list[int]) -> list[dict[str, Any]]:
    """N rules, one per device in turn, cycling through the kinds evaluated per reading.

    Against the benchmark's data (a 100-2,099 W saw-tooth, 230-235 V) the threshold rules raise
    and clear alerts all along; the others mostly watch quietly, as most rules do.
    """
    weekdays = {d: [["08:00", "18:00"]] for d in ("mon", "tue", "wed", "thu", "fri")}
    kinds: list[dict[str, Any]] = [
        {"kind": "threshold", "metric": "power_w", "op": ">", "value": 1500, "for_s": 60},
        {"kind": "range", "metric": "voltage_v", "min": 207, "max": 253, "for_s": 30},
        {"kind": "sudden_change", "metric": "power_w", "min_delta": 1500},
        {"kind": "after_hours", "value": 2500, "open_hours": weekdays},
        {"kind": "energy_budget", "budget_wh": 50_000},
        {"kind": "threshold", "metric": "current_a", "op": ">", "value": 40},
    ]
    return [
        {"name": f"bench rule {i}", "device_id": device_ids[i % len(device_ids)], **kinds[i % 6]}
        for i in range(n_rules)
    ]


async def _pipeline_path(
    batches: list[list[dict[str, Any]]], n_rules: int, database_url: str | None, clients: int
) -> float:
    from wattwatch.alerts.rules import RULE_ADAPTER
    from wattwatch.app import Wattwatch
    from wattwatch.config import Settings
    from wattwatch.domain import Role
    from wattwatch.registry.service import Principal

    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(data_dir=Path(tmp) / "data", database_url=database_url)
        ww = Wattwatch.open(settings, lock=True)
        try:
            assert ww.alerts is not None
            owner = Principal(0, ww.registry.db.create_org("bench"), Role.OWNER, "bench")
            site = ww.registry.create_site(owner, "bench", "Europe/Madrid", {})
            devices = [
                ww.registry.create_device(owner, name=f"d{d}", site_id=site["id"])[0]
                for d in range(len(batches))
            ]
            for body in rule_bodies(n_rules, [d["id"] for d in devices]):
                ww.alerts.create_rule(owner, RULE_ADAPTER.validate_python(body))
            await ww.start()
            try:
                assert len(ww.alerts.engine.runtimes) == n_rules
                slots = asyncio.Semaphore(clients)

                async def one(i: int) -> None:
                    async with slots:
                        result = await ww.pipeline.ingest_objects(devices[i], batches[i])
                        assert result.accepted == len(batches[i]), result

                started = time.perf_counter()
                await asyncio.gather(*(one(i) for i in range(len(batches))))
                elapsed = time.perf_counter() - started
                raised = len(ww.alerts.engine.open)
            finally:
                await ww.stop()
        finally:
            ww.close()
    if n_rules:
        print(f"    ({n_rules:,} rules: {raised:,} alerts open at the end)")
    return sum(len(b) for b in batches) / elapsed


def alert_overhead(
    batches: list[list[dict[str, Any]]],
    n_rules: int,
    database_url: str | None,
    clients: int,
    rounds: int,
) -> tuple[float, float]:
    """Best pipeline-path rate without and with ``n_rules`` rules, in alternating rounds."""
    best = {0: 0.0, n_rules: 0.0}
    for _ in range(rounds):
        for rules in (0, n_rules):
            rate = asyncio.run(_pipeline_path(batches, rules, database_url, clients))
            best[rules] = max(best[rules], rate)
    return best[0], best[n_rules]


def http_ingest(
    batches: list[list[dict[str, float | int]]],
    clients: int,
    database_url: str | None,
    rules: int = 0,
) -> tuple[float, float]:
    n = sum(len(b) for b in batches)
    extra = ("--database-url", database_url) if database_url else ()
    with tempfile.TemporaryDirectory() as tmp:
        srv = ServerProcess(Path(tmp) / "data", *extra).start()
        try:
            api = login(srv.url, "owner@localhost", srv.password or "")
            tokens = []
            ids: list[int] = []
            for d in range(len(batches)):
                r = api.post("/api/v1/devices", json={"name": f"dev{d}", "uid": f"bench-{d}"})
                tokens.append(r.json()["token"])
                ids.append(r.json()["id"])
            for body in rule_bodies(rules, ids):
                api.post("/api/v1/alert-rules", json=body).raise_for_status()
            api.close()
            host = f"127.0.0.1:{srv.http_port}"
            requests = [
                post(
                    host,
                    "/api/v1/telemetry",
                    orjson.dumps(b),
                    {"Authorization": f"Bearer {tokens[i]}", "Content-Type": "application/json"},
                )
                for i, b in enumerate(batches)
            ]
            started = time.perf_counter()
            answers = asyncio.run(send_all("127.0.0.1", srv.http_port, requests, clients))
            accepted = sum(int(a["accepted"]) for a in answers)  # type: ignore[call-overload]
            elapsed = time.perf_counter() - started
        finally:
            srv.stop()
    assert accepted == n, (accepted, n)
    return n / elapsed, elapsed


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--devices", type=int, default=1000)
    ap.add_argument("--per-device", type=int, default=1000)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--database-url", default=None, help="an empty PostgreSQL database")
    ap.add_argument("--rules", type=int, default=0, help="also measure N active alert rules")
    ap.add_argument("--rounds", type=int, default=2, help="alternating rounds for --rules")
    ap.add_argument("--store-only", action="store_true", help="skip the HTTP measurement")
    args = ap.parse_args()
    run(
        args.devices,
        args.per_device,
        args.clients,
        args.database_url,
        args.rules,
        args.rounds,
        store_only=args.store_only,
    )


if __name__ == "__main__":
    main()
