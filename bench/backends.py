"""Both stores in one run: the ingest and query benchmarks on SQLite and on PostgreSQL.

Makes a fresh PostgreSQL database per benchmark on the server given (default: the local test
server) and drops it afterwards. Usage:
  python bench/backends.py [--admin-url postgresql://postgres@127.0.0.1:5432/postgres]
                           [--devices 1000 --per-device 1000 --days 365]
"""

from __future__ import annotations

import argparse
import importlib
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
# The sibling scripts, imported by name (they are scripts, not a package).
ingest = importlib.import_module("ingest")
query = importlib.import_module("query")


@contextmanager
def fresh_database(admin_url: str) -> Iterator[str]:
    name = f"ww_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    try:
        yield f"{admin_url.rsplit('/', 1)[0]}/{name}"
    finally:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--admin-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    ap.add_argument("--devices", type=int, default=1000)
    ap.add_argument("--per-device", type=int, default=1000)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--days", type=int, default=365)
    ap.add_argument("--skip-query", action="store_true")
    ap.add_argument("--store-only", action="store_true", help="ingest: skip the HTTP path")
    args = ap.parse_args()
    results: dict[str, dict[str, float]] = {}
    only = args.store_only
    results["ingest sqlite"] = ingest.run(
        args.devices, args.per_device, args.clients, None, store_only=only
    )
    with fresh_database(args.admin_url) as url:
        results["ingest postgresql"] = ingest.run(
            args.devices, args.per_device, args.clients, url, store_only=only
        )
    if not args.skip_query:
        results["query sqlite"] = query.run(args.days, None)
        with fresh_database(args.admin_url) as url:
            results["query postgresql"] = query.run(args.days, url)
    print("\nsummary")
    for name, figures in results.items():
        shown = ", ".join(f"{k} {v:,.1f}" for k, v in figures.items())
        print(f"  {name:18s} {shown}")


if __name__ == "__main__":
    main()
