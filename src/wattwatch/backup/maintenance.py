"""Periodic upkeep while serving: raw-reading retention and scheduled backups (keep last N)."""

from __future__ import annotations

import logging
from pathlib import Path

from wattwatch.backup.service import create_backup, list_backups
from wattwatch.domain import now_ms
from wattwatch.periodic import PeriodicTask
from wattwatch.store.sqlstore import SqlStore

log = logging.getLogger(__name__)

DAY_MS = 86_400_000
RETENTION_EVERY_S = 3600


def apply_retention(store: SqlStore, raw_days: int) -> int:
    """Drop raw readings older than ``raw_days`` days (rollups stay); return rows dropped.

    PostgreSQL drops whole monthly partitions, so raw data lives up to a month longer there.
    """
    return store.drop_raw_before(now_ms() - raw_days * DAY_MS)


class Maintenance(PeriodicTask):
    """Runs retention hourly and a backup every ``backup_interval_s`` in a worker thread."""

    task_name = "maintenance"
    logger = log
    failure_message = "maintenance failed"  # upkeep must never take the server down
    poll_s = 30.0

    def __init__(
        self,
        store: SqlStore,
        *,
        retention_raw_days: int | None,
        backup_dir: Path | None,
        backup_interval_s: int,
        backup_keep: int,
    ) -> None:
        self.store = store
        self.retention_raw_days = retention_raw_days
        self.backup_dir = backup_dir
        self.backup_interval_s = backup_interval_s
        self.backup_keep = backup_keep

    @property
    def enabled(self) -> bool:
        return self.retention_raw_days is not None or self.backup_dir is not None

    def run_due(self, now_s: float, last: dict[str, float]) -> None:
        """Do whatever is due at ``now_s`` (blocking); ``last`` remembers when each ran."""
        if (
            self.retention_raw_days is not None
            and now_s - last.get("retention", 0) >= RETENTION_EVERY_S
        ):
            last["retention"] = now_s
            dropped = apply_retention(self.store, self.retention_raw_days)
            if dropped:
                log.info("retention: dropped %d raw readings", dropped)
        if self.backup_dir is not None and "backup" not in last:
            # After a restart, count from the newest backup already there.
            done = list_backups(self.backup_dir)
            last["backup"] = done[-1].stat().st_mtime if done else 0
        if self.backup_dir is not None and now_s - last.get("backup", 0) >= self.backup_interval_s:
            last["backup"] = now_s
            path = create_backup(self.store, self.backup_dir, keep=self.backup_keep)
            log.info("scheduled backup written to %s", path)
