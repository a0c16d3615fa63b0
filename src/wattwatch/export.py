"""Data access for analysis: wide per-device/site SQL views, an analyst role, CSV/Parquet export.

The wide views have the shape of the AIoT paper's tables — one row per timestamp, one column
per channel and metric (``ts, mains_v, mains_a, mains_p, mains_e, ac01_p, …``) — so a data
scientist can do ``pd.read_sql_table("wide_device_7", create_engine(url))``.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable, Sequence
from typing import IO, Any

from wattwatch.domain import METRIC_NAMES, Interval
from wattwatch.errors import InvalidInput
from wattwatch.queries.service import MAX_LIMIT, QueryService
from wattwatch.store.sqlstore import SqlStore

# Wide-view columns per channel: suffix, stored column, divisor to canonical units.
WIDE_METRICS: tuple[tuple[str, str], ...] = (("v", "v"), ("a", "a"), ("p", "p"), ("e", "e"))
# Members of this group role may read the analysis tables and views (PostgreSQL).
ANALYST_GROUP = "wattwatch_analyst"
# Tables an analyst may read whole; ``devices`` is granted without its secret columns.
ANALYST_TABLES = (
    "readings",
    "rollup_1m",
    "rollup_1h",
    "rollup_1d",
    "channel_last",
    "channels",
    "sites",
    "areas",
    "organisations",
)
ANALYST_DEVICE_COLUMNS = (
    "id",
    "uid",
    "org_id",
    "site_id",
    "area_id",
    "name",
    "kind",
    "protocol",
    "topic",
    "model",
    "firmware",
    "identifiers",
    "location",
    "online",
    "state",
    "last_seen_ms",
    "created_ms",
)
ROLLUP_COLUMNS = (
    "ts",
    "channel",
    "count",
    "power_w_avg",
    "power_w_min",
    "power_w_max",
    "energy_wh",
)
FORMATS = ("csv", "parquet")
MEDIA_TYPES = {"csv": "text/csv", "parquet": "application/vnd.apache.parquet"}
PAGE_ROWS = 50_000

Progress = Callable[[int, int | None], None]  # (rows written, rows expected or None)


def column_name(text: str) -> str:
    """A SQL/pandas-friendly column name: lower-case letters, digits and underscores."""
    name = re.sub(r"[^a-z0-9_]+", "_", text.lower()).strip("_") or "x"
    return f"c_{name}" if name[0].isdigit() else name


def _wide_select(columns: Sequence[tuple[int, str]]) -> str:
    """SELECT of one row per ts with ``<prefix>_<metric>`` columns for (channel id, prefix)."""
    parts = ["ts"]
    used: set[str] = {"ts"}
    for ch, prefix in columns:
        for suffix, col in WIDE_METRICS:
            name = f"{prefix}_{suffix}"
            if name in used:
                name = f"{prefix}_{ch}_{suffix}"
            used.add(name)
            parts.append(f"MAX(CASE WHEN ch = {int(ch)} THEN {col} END) / 1000.0 AS {name}")
    ids = ", ".join(str(int(ch)) for ch, _ in columns)
    return f"SELECT {', '.join(parts)} FROM readings WHERE ch IN ({ids}) GROUP BY ts"


def _replace_view(store: SqlStore, name: str, select: str) -> None:
    with store.engine.begin() as conn:
        conn.exec_driver_sql(f"DROP VIEW IF EXISTS {name}")
        conn.exec_driver_sql(f"CREATE VIEW {name} AS {select}")
        if (
            store.backend == "postgresql"
            and conn.exec_driver_sql(
                "SELECT 1 FROM pg_roles WHERE rolname = %s", (ANALYST_GROUP,)
            ).first()
        ):
            conn.exec_driver_sql(f"GRANT SELECT ON {name} TO {ANALYST_GROUP}")


def create_device_view(store: SqlStore, device_id: int) -> str:
    """(Re)create ``wide_device_<id>``: ``ts`` (epoch ms) and ``<channel>_{v,a,p,e}`` in V, A,
    W and Wh. Run it again after the device gains channels."""
    chans = store.registry.list_channels(device_id)
    if not chans:
        raise InvalidInput(f"device {device_id} has no channels")
    name = f"wide_device_{int(device_id)}"
    _replace_view(store, name, _wide_select([(c["id"], column_name(c["name"])) for c in chans]))
    return name


def create_site_view(store: SqlStore, org_id: int, site_id: int) -> str:
    """(Re)create ``wide_site_<id>``: every channel of the site's devices (sub-meters too, they
    are the labels NILM learns from) as ``d<device id>_<channel>_{v,a,p,e}``."""
    store.registry.get_site(org_id, site_id)
    columns: list[tuple[int, str]] = []
    for device in store.registry.list_devices(org_id, site_id):
        for c in store.registry.list_channels(device["id"]):
            columns.append((c["id"], f"d{device['id']}_{column_name(c['name'])}"))
    if not columns:
        raise InvalidInput(f"site {site_id} has no devices with channels")
    name = f"wide_site_{int(site_id)}"
    _replace_view(store, name, _wide_select(columns))
    return name


def create_analyst_role(store: SqlStore, role: str, password: str) -> None:
    """A PostgreSQL login that can read readings, rollups, the registry without secrets, and
    the wide views, and can change nothing."""
    if store.backend != "postgresql":
        raise InvalidInput("analyst roles are a PostgreSQL feature; SQLite has no users")
    if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", role):
        raise InvalidInput("role names are lower-case letters, digits and _ (max 63)")
    if len(password) < 10:
        raise InvalidInput("the password needs at least 10 characters")
    from psycopg import sql

    with store.engine.begin() as conn:
        raw = conn.connection.driver_connection
        assert raw is not None
        group = sql.Identifier(ANALYST_GROUP)
        if not raw.execute(
            "SELECT 1 FROM pg_roles WHERE rolname = %s", (ANALYST_GROUP,)
        ).fetchone():
            raw.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(group))
        if raw.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone():
            raise InvalidInput(f"role {role} exists already")
        who = sql.Identifier(role)
        raw.execute(
            sql.SQL("CREATE ROLE {} LOGIN PASSWORD {} IN ROLE {}").format(
                who, sql.Literal(password), group
            )
        )
        raw.execute(sql.SQL("ALTER ROLE {} SET default_transaction_read_only = on").format(who))
        db = raw.execute("SELECT current_database(), current_schema()").fetchone()
        assert db is not None
        raw.execute(
            sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(sql.Identifier(db[0]), group)
        )
        raw.execute(sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(sql.Identifier(db[1]), group))
        tables = sql.SQL(", ").join(sql.Identifier(t) for t in ANALYST_TABLES)
        raw.execute(sql.SQL("GRANT SELECT ON {} TO {}").format(tables, group))
        cols = sql.SQL(", ").join(sql.Identifier(c) for c in ANALYST_DEVICE_COLUMNS)
        raw.execute(sql.SQL("GRANT SELECT ({}) ON devices TO {}").format(cols, group))
        views = raw.execute(
            "SELECT viewname FROM pg_views WHERE schemaname = current_schema() "
            "AND viewname LIKE 'wide\\_%%'"
        ).fetchall()
        for (view,) in views:
            raw.execute(sql.SQL("GRANT SELECT ON {} TO {}").format(sql.Identifier(view), group))


def _parquet() -> Any:
    try:
        import pyarrow
        import pyarrow.parquet
    except ImportError:
        raise InvalidInput(
            "Parquet export needs pyarrow: pip install 'wattwatch[parquet]' (or use format=csv)"
        ) from None
    return pyarrow


class _Sink:
    """Writes pages of points as CSV or Parquet with one fixed set of columns."""

    def __init__(self, fmt: str, out: IO[bytes], columns: Sequence[str], raw: bool) -> None:
        self.columns = list(columns)
        self.fmt = fmt
        self.out = out
        self._writer: Any = None
        if fmt == "csv":
            self._text = io.TextIOWrapper(out, encoding="utf-8", newline="", write_through=True)
            self._csv = csv.writer(self._text)
            self._csv.writerow(self.columns)
            return
        pa = _parquet()
        fields = []
        for c in self.columns:
            kind = pa.string() if c == "channel" else pa.int64() if c in ("ts", "count") else None
            fields.append(pa.field(c, kind or pa.float64()))
        self._pa = pa
        self._schema = pa.schema(fields)
        self._writer = pa.parquet.ParquetWriter(out, self._schema, compression="zstd")

    def write(self, points: list[dict[str, Any]]) -> None:
        if self.fmt == "csv":
            cols = self.columns
            self._csv.writerows(
                [["" if p.get(c) is None else p.get(c) for c in cols] for p in points]
            )
            return
        table = self._pa.Table.from_pydict(
            {c: [p.get(c) for p in points] for c in self.columns}, schema=self._schema
        )
        self._writer.write_table(table)

    def close(self) -> None:
        if self.fmt == "csv":
            self._text.flush()
            self._text.detach()
        elif self._writer is not None:
            self._writer.close()


def export_readings(
    queries: QueryService,
    org_id: int,
    device_id: int,
    out: IO[bytes],
    *,
    fmt: str,
    from_ms: int,
    to_ms: int,
    interval: Interval = Interval.RAW,
    channel: str | None = None,
    metrics: Sequence[str] | None = None,
    progress: Progress | None = None,
) -> int:
    """Write a device's readings (any interval) to ``out`` as CSV or Parquet; return rows.

    Pages through the query so memory stays flat however long the range is.
    """
    if fmt not in FORMATS:
        raise InvalidInput(f"format must be one of {', '.join(FORMATS)}")
    raw = interval is Interval.RAW
    columns = ["ts", "channel", *(metrics or METRIC_NAMES)] if raw else list(ROLLUP_COLUMNS)
    expected = _expected_rows(queries, org_id, device_id, from_ms, to_ms, channel) if raw else None
    sink = _Sink(fmt, out, columns, raw)
    written = 0
    cursor: str | None = None
    try:
        while True:
            page = queries.readings(
                org_id,
                device_id,
                from_ms=from_ms,
                to_ms=to_ms,
                interval=interval,
                channel=channel,
                metrics=metrics,
                limit=PAGE_ROWS if interval not in (Interval.WEEK, Interval.MONTH) else MAX_LIMIT,
                cursor=cursor,
            )
            if page["points"]:
                sink.write(page["points"])
                written += len(page["points"])
                if progress:
                    progress(written, expected)
            cursor = page["next"]
            if not cursor:
                break
    finally:
        sink.close()
    return written


def _expected_rows(
    queries: QueryService,
    org_id: int,
    device_id: int,
    from_ms: int,
    to_ms: int,
    channel: str | None,
) -> int | None:
    """Roughly how many raw readings the range holds, from the hourly rollups (for progress)."""
    try:
        hours = queries.readings(
            org_id,
            device_id,
            from_ms=from_ms,
            to_ms=to_ms,
            interval=Interval.HOUR,
            channel=channel,
            limit=MAX_LIMIT,
        )
    except InvalidInput:
        return None
    return sum(int(p["count"]) for p in hours["points"]) or None


def export_bytes(queries: QueryService, org_id: int, device_id: int, **kw: Any) -> bytes:
    """``export_readings`` into memory (the HTTP API answers with it)."""
    buf = io.BytesIO()
    export_readings(queries, org_id, device_id, buf, **kw)
    return buf.getvalue()
