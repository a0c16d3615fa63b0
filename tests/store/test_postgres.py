"""PostgreSQL specifics: monthly partitions, many concurrent writers, COPY-sized batches."""

from __future__ import annotations

import random
import threading
from collections.abc import Iterator

import pytest
from tests.pgdb import fresh_database
from tests.store.conftest import open_url
from tests.store.test_contract import T0, assert_rollups_match, make_device, series

from wattwatch.errors import ConfigError
from wattwatch.store.postgres import PostgresStore, libpq_url, redact, sqlalchemy_url


@pytest.fixture
def pg_store_url() -> Iterator[str]:
    with fresh_database() as url:
        yield url


def test_readings_live_in_monthly_partitions(pg_store_url: str) -> None:
    store = open_url(pg_store_url)
    assert isinstance(store, PostgresStore)
    try:
        ahead = store.partitions()
        assert len(ahead) == 3  # this month and two ahead, before any reading arrives
        (ch,) = make_device(store, channels=1)
        # Two readings in Nov 2026 and one in Jan 2025: the old month is created on demand.
        store.write_readings(series(ch, 2, start=1_793_491_200_000) + series(ch, 1, start=T0))
        names = store.partitions()
        assert "readings_2025_01" in names and "readings_2026_11" in names
        with store.engine.connect() as conn:
            n = conn.exec_driver_sql("SELECT count(*) FROM readings_2025_01").scalar_one()
        assert n == 1
    finally:
        store.close()


def test_concurrent_writers_store_each_reading_once_with_exact_rollups(pg_store_url: str) -> None:
    """Four stores (as four worker processes would) write overlapping, shuffled batches of the
    same channels at once: every reading is stored once and the rollups are the in-order ones."""
    first = open_url(pg_store_url)
    chans = make_device(first, channels=3)
    rows = [r for ch in chans for r in series(ch, 3000, step=3000)]
    stores = [first] + [open_url(pg_store_url) for _ in range(3)]
    dups = [0] * len(stores)
    sent = [0] * len(stores)
    errors: list[BaseException] = []
    start = threading.Barrier(len(stores))

    def work(k: int) -> None:
        rng = random.Random(k)
        # Each writer gets every chunk once, in its own order: 4x redundancy, heavy overlap.
        chunks = [rows[i : i + 400] for i in range(0, len(rows), 400)]
        rng.shuffle(chunks)
        start.wait()
        try:
            for chunk in chunks:
                batch = list(chunk)
                rng.shuffle(batch)
                dups[k] += len(stores[k].write_readings(batch))
                sent[k] += len(batch)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(len(stores))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    try:
        assert not errors, errors
        assert first.count_readings() == len(rows)
        assert sum(dups) == sum(sent) - len(rows)
        assert_rollups_match(first, chans, rows)
    finally:
        for s in stores:
            s.close()


def test_urls_are_normalised_and_passwords_never_shown() -> None:
    assert sqlalchemy_url("postgres://u:pw@h/db") == "postgresql+psycopg://u:pw@h/db"
    assert libpq_url("postgresql+psycopg://u@h/db") == "postgresql://u@h/db"
    assert redact("postgresql://u:secret@h:5432/db") == "postgresql://u:***@h:5432/db"
    with pytest.raises(ConfigError):
        sqlalchemy_url("mysql://h/db")


def test_a_month_dropped_by_another_process_is_made_again(pg_store_url: str) -> None:
    a, b = open_url(pg_store_url), open_url(pg_store_url)
    try:
        (ch,) = make_device(a, channels=1)
        a.write_readings(series(ch, 10, start=T0))
        b.write_readings(series(ch, 1, start=T0 + 1000))  # b now knows readings_2025_01
        assert a.drop_raw_before(T0 + 40 * 86_400_000) == 11  # a drops January
        late = series(ch, 3, start=T0 + 2500, seed=4)
        assert b.write_readings(late) == []  # b's belief is stale: it recreates the month
        assert b.count_readings() == 3
    finally:
        a.close()
        b.close()
