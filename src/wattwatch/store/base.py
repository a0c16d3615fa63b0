"""The store interface every backend implements, and the row shapes that cross it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

from wattwatch.domain import METRICS, Interval

# Columns with their own place in a reading row, in row order; the other metrics ride in
# ``extra`` (JSON) because most devices never send them and a NULL column still costs a byte.
CORE_METRICS: tuple[str, ...] = ("power_w", "energy_wh", "voltage_v", "current_a")
EXTRA_METRICS: tuple[str, ...] = tuple(m for m in METRICS if m not in CORE_METRICS)
SCALE: dict[str, int] = {name: spec.scale for name, spec in METRICS.items()}

# Readings of one channel further apart than this are not bridged when integrating power
# into energy: a gap is a gap, not a flat line.
MAX_INTEGRATION_GAP_MS = 15 * 60 * 1000

ROLLUP_MS: dict[Interval, int] = {
    Interval.MINUTE: 60_000,
    Interval.HOUR: 3_600_000,
}


class StoredRow(NamedTuple):
    """A validated reading as stored: core metrics as integers of 1/1000 unit (mW, mWh, mV, mA).

    ``extra`` is a JSON object text of the remaining metrics in canonical units, or None.
    """

    channel_id: int
    ts_ms: int
    power_mw: int | None
    energy_mwh: int | None
    voltage_mv: int | None
    current_ma: int | None
    extra: str | None


@dataclass(frozen=True, slots=True)
class ChannelInfo:
    id: int
    device_id: int
    name: str
    timezone: str


class ReadingStore(Protocol):
    """Raw readings and their rollups. Implementations: SqliteReadingStore, PostgresReadingStore."""

    def write_readings(self, rows: Sequence[StoredRow]) -> list[int]:
        """Store ``rows`` in one transaction and update rollups; return indices of duplicates.

        A row whose (channel, ts) is already stored, or repeats an earlier row of ``rows``,
        is a duplicate: it is not stored again and changes nothing.
        """
        ...

    def query_raw(
        self,
        channel_ids: Sequence[int],
        from_ms: int,
        to_ms: int,
        limit: int,
        after: tuple[int, int] | None = None,
        metrics: Sequence[str] | None = None,
    ) -> list[dict[str, Any]]:
        """Raw readings in [from_ms, to_ms), ordered by (ts, channel), at most ``limit``."""
        ...

    def query_rollup(
        self,
        channel_ids: Sequence[int],
        interval: Interval,
        from_ms: int,
        to_ms: int,
        limit: int,
        after: tuple[int, int] | None = None,
    ) -> list[dict[str, Any]]:
        """Stored rollup rows (1m, 1h or local 1d) in [from_ms, to_ms), ordered by (ts, channel).

        Each: ts, channel_id, count, pn (readings with power), psum (mW), pmin, pmax (mW),
        energy_mwh.
        """
        ...

    def daily_energy(
        self, channel_ids: Sequence[int], from_ms: int, to_ms: int
    ) -> list[tuple[int, int, int, int]]:
        """(day_start_ms, channel_id, count, energy_mwh) of the local-day rollups in range."""
        ...

    def count_readings(self) -> int: ...

    def storage_bytes(self) -> int: ...

    def close(self) -> None: ...


class ChannelDirectory(Protocol):
    """What the ingest pipeline asks the registry: channel ids by device + name."""

    def resolve_channel(self, device_id: int, name: str) -> int: ...


def decode_row(
    row: Sequence[Any], metrics: Sequence[str] | None = None
) -> dict[str, float | int | None]:
    """Turn a stored (ts, channel_id, p, e, v, a, extra) row into canonical metric values."""
    import orjson

    out: dict[str, float | int | None] = {"ts": row[0], "channel_id": row[1]}
    for name, raw in zip(CORE_METRICS, row[2:6], strict=True):
        if metrics is None or name in metrics:
            out[name] = None if raw is None else raw / 1000
    if row[6] is not None:
        extra: Mapping[str, float] = orjson.loads(row[6])
        for name, value in extra.items():
            if metrics is None or name in metrics:
                out[name] = value
    return out
