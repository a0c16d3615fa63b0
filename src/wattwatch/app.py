"""Composition root: builds the store, services and pipeline, and wires them together."""

from __future__ import annotations

from dataclasses import dataclass

from wattwatch.backup.maintenance import Maintenance
from wattwatch.config import Settings
from wattwatch.errors import ConfigError
from wattwatch.ingest.pipeline import IngestPipeline
from wattwatch.ingest.stats import IngestStats
from wattwatch.queries.service import QueryService
from wattwatch.registry.service import Bootstrap, RegistryService
from wattwatch.store.sqlstore import SqlStore


def open_store(settings: Settings, *, lock: bool) -> SqlStore:
    """The store the settings' database URL names: a SQLite file or a PostgreSQL database."""
    url = settings.store_url()
    if url.startswith("sqlite:"):
        from wattwatch.store.sqlite import SqliteStore

        return SqliteStore(url, lock=lock)
    if url.startswith(("postgresql:", "postgresql+psycopg:", "postgres:")):
        from wattwatch.store.postgres import PostgresStore

        return PostgresStore(url, lock=lock)
    raise ConfigError(f"database URL {url.split('@')[-1]!r}: use sqlite:/// or postgresql://")


@dataclass
class Wattwatch:
    """One running wattwatch: what the HTTP API, the broker and the CLI talk to."""

    settings: Settings
    store: SqlStore
    registry: RegistryService
    queries: QueryService
    pipeline: IngestPipeline
    stats: IngestStats
    bootstrap: Bootstrap | None = None
    maintenance: Maintenance | None = None

    @classmethod
    def open(cls, settings: Settings, *, lock: bool = True) -> Wattwatch:
        store = open_store(settings, lock=lock)
        stats = IngestStats()
        registry = RegistryService(store.registry, login_ttl_s=settings.login_token_ttl_s)
        pipeline = IngestPipeline(
            store,
            store.registry,
            stats,
            queue_readings=settings.ingest_queue_readings,
            batch_readings=settings.ingest_batch_readings,
        )
        return cls(
            settings=settings,
            store=store,
            registry=registry,
            queries=QueryService(store, store.registry),
            pipeline=pipeline,
            stats=stats,
            maintenance=Maintenance(
                store,
                retention_raw_days=settings.retention_raw_days,
                backup_dir=settings.backup_dir,
                backup_interval_s=settings.backup_interval_s,
                backup_keep=settings.backup_keep,
            ),
        )

    async def start(self) -> None:
        await self.pipeline.start()
        if self.maintenance is not None:
            self.maintenance.start()

    async def stop(self) -> None:
        if self.maintenance is not None:
            await self.maintenance.stop()
        await self.pipeline.stop()

    def close(self) -> None:
        self.store.close()
