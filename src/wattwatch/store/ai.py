"""AI persistence (SQLAlchemy Core): appliance labels and versioned models of each device.

Backend-neutral like ``SqlRegistry``. Records are keyed by device; the service checks that the
caller's organisation owns the device before it reaches here (tenant isolation).
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import and_, delete, func, insert, select

from wattwatch.store.records import Record, SqlRecordStore
from wattwatch.store.schema import ai_labels, ai_models

LABEL_SOURCES = ("user", "plug", "seed")

# Model listings leave the blob out: it can be megabytes.
_MODEL_COLUMNS = (
    ai_models.c.id,
    ai_models.c.device_id,
    ai_models.c.kind,
    ai_models.c.version,
    ai_models.c.created_ms,
    ai_models.c.metrics,
)


class SqlAiStore(SqlRecordStore):
    # -- labels ---------------------------------------------------------------------------
    def add_labels(self, rows: Sequence[Record]) -> list[int]:
        """Insert label rows (device_id, appliance, start_ms, end_ms, source, created_by,
        created_ms); returns their ids in order."""
        return self._insert_all(ai_labels, rows)

    def list_labels(
        self,
        device_id: int,
        *,
        appliance: str | None = None,
        from_ms: int | None = None,
        to_ms: int | None = None,
        source: str | None = None,
    ) -> list[Record]:
        stmt = select(ai_labels).where(ai_labels.c.device_id == device_id)
        if appliance is not None:
            stmt = stmt.where(ai_labels.c.appliance == appliance)
        if from_ms is not None:
            stmt = stmt.where(ai_labels.c.end_ms > from_ms)
        if to_ms is not None:
            stmt = stmt.where(ai_labels.c.start_ms < to_ms)
        if source is not None:
            stmt = stmt.where(ai_labels.c.source == source)
        return self._read(stmt.order_by(ai_labels.c.start_ms, ai_labels.c.id))

    def delete_label(self, device_id: int, label_id: int) -> bool:
        with self.engine.begin() as conn:
            done = conn.execute(
                delete(ai_labels).where(
                    and_(ai_labels.c.id == label_id, ai_labels.c.device_id == device_id)
                )
            )
        return bool(done.rowcount)

    def labelled_devices(self) -> list[int]:
        """Devices that have at least one label."""
        with self.read_engine.connect() as conn:
            rows = conn.execute(select(ai_labels.c.device_id).distinct())
            return sorted(int(r[0]) for r in rows)

    # -- models ---------------------------------------------------------------------------
    def add_model(
        self, device_id: int, kind: str, metrics: Record, blob: bytes, created_ms: int, keep: int
    ) -> int:
        """Store a new version (the newest + 1) and drop all but the newest ``keep``."""
        with self.engine.begin() as conn:
            newest = conn.execute(
                select(func.max(ai_models.c.version)).where(
                    ai_models.c.device_id == device_id, ai_models.c.kind == kind
                )
            ).scalar()
            version = int(newest or 0) + 1
            conn.execute(
                insert(ai_models).values(
                    device_id=device_id,
                    kind=kind,
                    version=version,
                    created_ms=created_ms,
                    metrics=metrics,
                    blob=blob,
                )
            )
            if keep > 0:
                conn.execute(
                    delete(ai_models).where(
                        ai_models.c.device_id == device_id,
                        ai_models.c.kind == kind,
                        ai_models.c.version <= version - keep,
                    )
                )
        return version

    def list_models(self, device_id: int, kind: str | None = None) -> list[Record]:
        """Stored versions of a device, newest first, without their blobs."""
        stmt = select(*_MODEL_COLUMNS).where(ai_models.c.device_id == device_id)
        if kind is not None:
            stmt = stmt.where(ai_models.c.kind == kind)
        return self._read(stmt.order_by(ai_models.c.kind, ai_models.c.version.desc()))

    def newest_model(self, device_id: int, kind: str) -> Record | None:
        """The newest version of a kind, with its blob."""
        model = self._read_first(
            select(ai_models)
            .where(ai_models.c.device_id == device_id, ai_models.c.kind == kind)
            .order_by(ai_models.c.version.desc())
            .limit(1)
        )
        if model is None:
            return None
        model["blob"] = bytes(model["blob"])
        return model

    def newest_created(self, kind: str) -> dict[int, int]:
        """device_id → creation time (ms) of its newest model of ``kind``."""
        with self.read_engine.connect() as conn:
            rows = conn.execute(
                select(ai_models.c.device_id, func.max(ai_models.c.created_ms))
                .where(ai_models.c.kind == kind)
                .group_by(ai_models.c.device_id)
            )
            return {int(d): int(c) for d, c in rows}
