"""HTTP batch bodies (JSON array, NDJSON, CSV) → readings, keeping every good row of a bad batch."""

from __future__ import annotations

import csv
import io
from typing import Any

import orjson

from wattwatch.domain import Reading, Rejection, parse_ts

# One request may carry at most this many readings; larger uploads are split by the client.
MAX_BATCH_READINGS = 100_000

_CSV_TYPES = ("text/csv", "application/csv")
_NDJSON_TYPES = ("application/x-ndjson", "application/ndjson", "application/jsonl")


class BodyError(ValueError):
    """The body as a whole cannot be read (not one reading can be recovered)."""


def reading_from_object(obj: Any, index: int) -> Reading | Rejection:
    """A native reading object ``{"ts", "channel", <metric>: value…}`` → Reading or Rejection."""
    if obj.__class__ is not dict:
        return Rejection(index, f"a reading must be a JSON object, got {type(obj).__name__}")
    values = dict(obj)
    ts_raw = values.pop("ts", None)
    channel = values.pop("channel", None)
    ts: int | None = None
    if ts_raw is not None:
        if ts_raw.__class__ is int:
            ts = ts_raw
        else:
            try:
                ts = parse_ts(ts_raw)
            except ValueError as exc:
                return Rejection(index, str(exc))
    if channel is not None and (channel.__class__ is not str or not 0 < len(channel) <= 64):
        return Rejection(index, "channel must be a non-empty string of at most 64 characters")
    return Reading(values=values, ts_ms=ts, channel=channel)


def split_objects(items: list[Any]) -> tuple[list[Reading], list[int], list[Rejection]]:
    """Items are parsed objects, or Rejections for rows that could not even be parsed."""
    if len(items) > MAX_BATCH_READINGS:
        raise BodyError(f"batch has {len(items)} rows; at most {MAX_BATCH_READINGS} allowed")
    readings: list[Reading] = []
    where: list[int] = []
    rejected: list[Rejection] = []
    for i, item in enumerate(items):
        out = item if isinstance(item, Rejection) else reading_from_object(item, i)
        if isinstance(out, Rejection):
            rejected.append(out)
        else:
            readings.append(out)
            where.append(i)
    return readings, where, rejected


def _csv_value(text: str) -> Any:
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        return text  # kept as text so validation names the column and value


def _parse_csv(body: bytes) -> list[Any]:
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise BodyError(f"CSV body is not UTF-8: {exc}") from None
    # newline="" as the csv module asks: a quoted field may hold a line break, and a lone CR
    # ends a row instead of being an error.
    rows = csv.reader(io.StringIO(text, newline=""))
    try:
        header = [h.strip() for h in next(rows, [])]
    except csv.Error as exc:
        raise BodyError(f"CSV header row cannot be read: {exc}") from None
    if not any(header):
        raise BodyError("CSV body has no header row (e.g. ts,channel,power_w,energy_wh)")
    items: list[Any] = []
    while True:
        try:
            line = next(rows)
        except StopIteration:
            break
        except csv.Error as exc:  # e.g. a field over the csv module's size limit
            # The reader goes on with the next row: a bad row costs that row only.
            items.append(Rejection(len(items), f"row cannot be read as CSV: {exc}"))
            continue
        if len(line) != len(header):
            items.append(
                Rejection(len(items), f"row has {len(line)} fields, header has {len(header)}")
            )
            continue
        items.append(
            {
                key: cell if key == "channel" else _csv_value(cell)
                for key, cell in ((k, c.strip()) for k, c in zip(header, line, strict=True))
                if cell
            }
        )
    return items


def _parse_ndjson(body: bytes) -> list[Any]:
    lines = body.split(b"\n")
    if lines and not lines[-1].strip():
        lines.pop()  # the newline that ends the last record
    items: list[Any] = []
    for n, line in enumerate(lines):
        try:
            items.append(orjson.loads(line))
        except orjson.JSONDecodeError as exc:
            items.append(Rejection(n, f"line is not valid JSON: {exc}"))
    return items


def parse_batch(
    body: bytes, content_type: str | None
) -> tuple[list[Reading], list[int], list[Rejection]]:
    """Parse a batch body. Returns readings, the body index of each, and per-row rejections.

    Index = position in the JSON array, the NDJSON line (0-based) or the CSV data row
    (0-based, after the header). Raises ``BodyError`` when nothing can be read at all.
    """
    kind = (content_type or "application/json").split(";")[0].strip().lower()
    if kind in _CSV_TYPES:
        return split_objects(_parse_csv(body))
    if kind in _NDJSON_TYPES:
        return split_objects(_parse_ndjson(body))
    if kind not in ("application/json", "text/json", "application/octet-stream", ""):
        raise BodyError(
            f"unsupported content type {kind!r}; use application/json, "
            "application/x-ndjson or text/csv"
        )
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BodyError(f"body is not valid JSON: {exc}") from None
    return split_objects(json_items(data))


def json_items(data: Any) -> list[Any]:
    """The reading objects of a parsed JSON body (an array, or one object)."""
    if isinstance(data, dict):
        return [data]
    if not isinstance(data, list):
        raise BodyError("body must be a JSON array of reading objects (or one object)")
    if len(data) > MAX_BATCH_READINGS:
        raise BodyError(f"batch has {len(data)} readings; at most {MAX_BATCH_READINGS} allowed")
    return data


def parse_json_array(body: bytes) -> list[Any]:
    try:
        return json_items(orjson.loads(body))
    except orjson.JSONDecodeError as exc:
        raise BodyError(f"body is not valid JSON: {exc}") from None


def is_json(content_type: str | None) -> bool:
    kind = (content_type or "application/json").split(";")[0].strip().lower()
    return kind in ("application/json", "text/json", "application/octet-stream", "")
