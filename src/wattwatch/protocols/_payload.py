"""Shared machinery of the protocol adapters: bounded parsing, metric tables, topic matching."""

from __future__ import annotations

import json
import logging
import re
import zlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import wraps
from typing import Any, Final, ParamSpec

import orjson

from wattwatch.domain import (
    CommandAction,
    CommandResult,
    Decoded,
    Reading,
    Rejection,
    check_ts,
    check_value,
    parse_ts,
)

log = logging.getLogger("wattwatch.protocols")

# A device message is small; an HTTP/offline batch of MAX_ITEMS readings is ~2 MB. Anything
# bigger is refused before parsing so one client cannot make us hold hundreds of MB.
MAX_PAYLOAD_BYTES: Final = 4 * 1024 * 1024
MAX_ITEMS: Final = 10_000
# Attributes end up in the device record; keep them to what a status message plausibly says.
MAX_ATTRIBUTES_BYTES: Final = 32 * 1024
# MQTT allows 64 KiB topics; ours are a few levels of short names.
MAX_TOPIC_CHARS: Final = 1024
# At most this many problems are spelled out in one rejection reason.
MAX_REASONS: Final = 5

Converter = Callable[[object], float]
P = ParamSpec("P")

_JSON_TYPES: Final[dict[type, str]] = {
    dict: "object",
    list: "array",
    str: "string",
    bool: "boolean",
    type(None): "null",
    int: "number",
    float: "number",
}


def json_type(value: object) -> str:
    """The JSON name of ``value``'s type, for messages a device author will read."""
    return _JSON_TYPES.get(type(value), type(value).__name__)


def short(value: object, limit: int = 40) -> str:
    """``repr`` cut to ``limit`` characters: reasons quote device input, which may be huge."""
    if isinstance(value, dict | list):
        # Never repr a container: it may be megabytes, or nested deep enough to blow the stack.
        count = len(value)
        return f"a JSON {json_type(value)} of {count} {'entry' if count == 1 else 'entries'}"
    text = repr(value[: limit + 1] if isinstance(value, str) else value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def join_reasons(reasons: Sequence[str]) -> str:
    shown = "; ".join(reasons[:MAX_REASONS])
    extra = len(reasons) - MAX_REASONS
    return f"{shown}; and {extra} more" if extra > 0 else shown


def rejected(reason: str, index: int = 0) -> Decoded:
    return Decoded(rejected=[Rejection(index, reason)])


def never_raises(decode: Callable[P, Decoded]) -> Callable[P, Decoded]:
    """Make a decoder keep its promise even when it has a bug: the ingest loop must survive."""

    @wraps(decode)
    def guarded(*args: P.args, **kwargs: P.kwargs) -> Decoded:
        try:
            return decode(*args, **kwargs)
        except Exception as exc:
            log.exception("protocol decoder %s failed", decode.__module__)
            return rejected(f"internal error while decoding: {type(exc).__name__}")

    return guarded


# --- payload parsing ---------------------------------------------------------------------


def load_json(payload: bytes) -> Any:
    """Parse a JSON payload; raise ``ValueError`` with a readable reason when it is not one."""
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise ValueError(f"payload is {len(payload)} bytes, over the {MAX_PAYLOAD_BYTES} limit")
    data = bytes(payload)
    if not data.strip():
        raise ValueError("payload is empty")
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        strict_error = str(exc)
    # orjson reads strict JSON only. Firmware that prints NaN or Infinity for a failed sensor
    # would lose the whole batch; the lenient stdlib parser lets us reject just those values
    # (they fail the finite check later) and keep the good readings around them.
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError("payload is not valid UTF-8") from None
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        raise ValueError(f"payload is not valid JSON: {strict_error}") from None


def load_text(payload: bytes, max_chars: int = 64) -> str:
    """A short plain-text payload (``Online``, ``ON``, ``true``), stripped."""
    if len(payload) > max_chars * 4:
        raise ValueError(f"payload is {len(payload)} bytes, too long for a plain-text value")
    try:
        text = bytes(payload).decode("utf-8").strip()
    except UnicodeDecodeError:
        raise ValueError("payload is not valid UTF-8") from None
    if not text:
        raise ValueError("payload is empty")
    return text


def decode_online(payload: bytes, words: Mapping[str, bool], expected: str) -> Decoded:
    """``online`` from a plain-text payload that is one of ``words`` (lower case; any case on
    the wire), or a rejection saying what was ``expected``."""
    try:
        text = load_text(payload)
    except ValueError as exc:
        return rejected(str(exc))
    online = words.get(text.lower())
    if online is None:
        return rejected(f"{expected}, got {short(text)}")
    return Decoded(online=online)


def load_object(payload: bytes) -> dict[str, Any]:
    data = load_json(payload)
    if not isinstance(data, dict):
        raise ValueError(f"payload must be a JSON object, got {json_type(data)}")
    return data


def load_items(payload: bytes) -> list[Any]:
    """One object or an array of them, as a list; arrays over ``MAX_ITEMS`` are refused whole."""
    data = load_json(payload)
    if not isinstance(data, list):
        return [data]
    if len(data) > MAX_ITEMS:
        raise ValueError(f"batch of {len(data)} items is over the {MAX_ITEMS} limit; split it")
    return data


def decode_items(payload: bytes, read: Callable[[Any], Reading | None]) -> Decoded:
    """The readings ``read`` makes of each item of ``payload`` (``load_items``).

    An item ``read`` refuses (``ValueError``) is rejected alone, under its index; one it
    returns None for (nothing to store) is skipped.
    """
    try:
        items = load_items(payload)
    except ValueError as exc:
        return rejected(str(exc))
    decoded = Decoded()
    for index, item in enumerate(items):
        try:
            reading = read(item)
        except ValueError as exc:
            decoded.rejected.append(Rejection(index, str(exc)))
            continue
        if reading is not None:
            decoded.readings.append(reading)
    return decoded


def bounded_attributes(attributes: Mapping[str, Any]) -> dict[str, Any]:
    """Attributes as plain, storable JSON data, or ``ValueError`` when too big or too deep."""
    try:
        encoded = orjson.dumps(attributes)
    except TypeError as exc:  # orjson.JSONEncodeError: too deep, lone surrogates, >64-bit ints
        raise ValueError(f"attributes cannot be stored: {exc}") from None
    if len(encoded) > MAX_ATTRIBUTES_BYTES:
        raise ValueError(
            f"attributes are {len(encoded)} bytes, over the {MAX_ATTRIBUTES_BYTES} limit"
        )
    # The round trip also turns NaN/Infinity from the lenient parser into null.
    result: dict[str, Any] = orjson.loads(encoded)
    return result


# --- values ------------------------------------------------------------------------------


def number(value: object) -> float:
    """A JSON number as a float (strict: no strings, no booleans)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"must be a number, got {json_type(value)}")
    try:
        return float(value)
    except OverflowError:  # an integer with hundreds of digits, via the lenient parser
        raise ValueError("is too large a number") from None


def lenient_number(value: object) -> float:
    """A number, or a string holding one: vendor firmware and TB scripts often send "229.8"."""
    if isinstance(value, str):
        text = value.strip()
        try:
            if len(text) > 40:
                raise ValueError
            return float(text)
        except ValueError:
            raise ValueError(f"must be a number, got string {short(value)}") from None
    return number(value)


def scaled(factor: float, base: Converter = lenient_number) -> Converter:
    """A converter multiplying by ``factor`` (kWh → Wh …)."""

    def convert(value: object) -> float:
        # Rounding drops binary noise such as 12.345 * 1000 = 12345.000000000002; the store
        # keeps 1/1000 of a unit at best, so six decimals lose nothing.
        return round(base(value) * factor, 6)

    return convert


_ON: Final = frozenset({"on", "true", "1"})
_OFF: Final = frozenset({"off", "false", "0"})


def switch_state(value: object) -> float:
    """A relay state (true/false, 1/0, "ON"/"OFF") as the ``state`` metric: 1.0 or 0.0."""
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    if isinstance(value, int | float) and value in (0, 1):
        return float(value)
    if isinstance(value, str) and len(value) <= 8:
        text = value.strip().lower()
        if text in _ON:
            return 1.0
        if text in _OFF:
            return 0.0
    raise ValueError(f"must be on/off, got {short(value)}")


def metric_value(key: str, metric: str, raw: object, convert: Converter) -> float:
    """Convert and range-check one value; ``ValueError`` says what is wrong and where."""
    try:
        value = convert(raw)
    except ValueError as exc:
        raise ValueError(f"{short(key)} {exc}" if key != metric else f"{metric} {exc}") from None
    problem = check_value(metric, value)
    if problem is not None:
        raise ValueError(problem if key == metric else f"{problem} (from {short(key)})")
    return value


@dataclass(frozen=True, slots=True)
class MetricField:
    """One row of an adapter's table: where a value sits, which metric it is, how to convert it.

    Like Home Assistant's sensor descriptions: the adapter says *what* maps to *what*, and one
    loop (``extract``) does the work for every protocol.
    """

    path: tuple[str, ...]
    metric: str
    convert: Converter = lenient_number

    @property
    def key(self) -> str:
        return ".".join(self.path)


def field(key: str, metric: str, convert: Converter = lenient_number) -> MetricField:
    """A table row; a dotted ``key`` reaches into nested objects (``aenergy.total``)."""
    return MetricField(tuple(key.split(".")), metric, convert)


_MISSING: Final = object()


def lookup(obj: Mapping[str, Any], path: tuple[str, ...]) -> Any:
    value: Any = obj
    for part in path:
        if not isinstance(value, dict) or part not in value:
            return _MISSING
        value = value[part]
    return value


def extract(obj: Mapping[str, Any], fields: Iterable[MetricField]) -> dict[str, float]:
    """The metric values ``fields`` find in ``obj``; ``ValueError`` lists every bad one.

    Absent keys and JSON null are skipped: vendor firmware uses null for "not measured".
    """
    values: dict[str, float] = {}
    problems: list[str] = []
    for row in fields:
        raw = lookup(obj, row.path)
        if raw is _MISSING or raw is None:
            continue
        try:
            values[row.metric] = metric_value(row.key, row.metric, raw, row.convert)
        except ValueError as exc:
            problems.append(str(exc))
    if problems:
        raise ValueError(join_reasons(problems))
    return values


def reading_ts(raw: object, received_ms: int) -> int:
    """A device-supplied reading time as epoch ms, checked against the receive time."""
    try:
        ts = parse_ts(raw)
    except OverflowError:  # parse_ts on an integer with hundreds of digits
        raise ValueError("timestamp is out of range") from None
    problem = check_ts(ts, received_ms)
    if problem is not None:
        raise ValueError(problem)
    return ts


_CHANNEL_RE: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}")


def channel_name(value: object) -> str | None:
    """A device-supplied channel name; a closed alphabet keeps it safe in URLs, SQL and HTML."""
    if value is None:
        return None
    if not isinstance(value, str) or not _CHANNEL_RE.fullmatch(value):
        raise ValueError(
            f"channel must be 1-64 letters, digits or '_.:-', got {short(value)}"
            if isinstance(value, str)
            else f"channel must be a string, got {json_type(value)}"
        )
    return value


def clean_text(value: object, what: str, max_chars: int = 128) -> str:
    """A short printable string (ids, error messages); numbers are accepted as their text."""
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) < 10**18:
        value = str(value)
    if not isinstance(value, str):
        raise ValueError(f"{what} must be a string, got {json_type(value)}")
    if not value or len(value) > max_chars or not value.isprintable():
        raise ValueError(f"{what} must be 1-{max_chars} printable characters, got {short(value)}")
    return value


def message_text(value: object, max_chars: int = 200) -> str:
    """Free text from a device (an error message) made printable and short."""
    text = value if isinstance(value, str) else short(value, max_chars)
    text = "".join(ch if ch.isprintable() else "?" for ch in text[:max_chars])
    return text or "error"


# --- commands ----------------------------------------------------------------------------


def parse_action(action: str) -> CommandAction:
    try:
        return CommandAction(action)
    except ValueError:
        choices = ", ".join(a.value for a in CommandAction)
        raise ValueError(f"unknown action {short(action)}; expected one of: {choices}") from None


def failed_answer(command_id: str, problem: str, reason: str) -> Decoded:
    """A device's answer to ``command_id`` that cannot be used: rejected with ``reason``.

    The id is known, so the command fails now (error ``"<problem>: <reason>"``) rather than
    waiting for its timeout.
    """
    return Decoded(
        rejected=[Rejection(0, reason)],
        command_result=CommandResult(ok=False, id=command_id, error=f"{problem}: {reason}"),
    )


def numeric_id(command_id: str, bits: int) -> int:
    """A positive integer below ``2**bits`` standing for ``command_id``.

    ThingsBoard and Shelly firmware parse request ids as integers. A decimal command id that
    fits is used as is; any other id is hashed (a clash needs two pending commands for the
    same device among 2**bits values).
    """
    limit = 1 << bits
    decimal = len(command_id) <= 10 and command_id.isascii() and command_id.isdecimal()
    if decimal and 0 < int(command_id) < limit:
        return int(command_id)
    return zlib.crc32(command_id.encode("utf-8", "surrogatepass")) % (limit - 1) + 1


# --- topics ------------------------------------------------------------------------------


def topic_levels(topic: str) -> list[str] | None:
    """The levels of a concrete topic, or None when it is not one (empty, wildcard, NUL…)."""
    if (
        not isinstance(topic, str)
        or not topic
        or len(topic) > MAX_TOPIC_CHARS
        or "+" in topic
        or "#" in topic
        or "\x00" in topic
    ):
        return None
    return topic.split("/")


def filter_levels(topic_filter: str) -> list[str] | None:
    """The levels of a valid subscription filter, or None."""
    if (
        not isinstance(topic_filter, str)
        or not topic_filter
        or len(topic_filter) > MAX_TOPIC_CHARS
        or "\x00" in topic_filter
    ):
        return None
    levels = topic_filter.split("/")
    for i, level in enumerate(levels):
        if "#" in level and (level != "#" or i != len(levels) - 1):
            return None
        if "+" in level and level != "+":
            return None
    return levels


def valid_level(level: str) -> bool:
    """A topic level we accept as (part of) a device address."""
    # A leading "$" is reserved by MQTT for broker topics ($SYS); "/" would add a level.
    return (
        bool(level)
        and level.isprintable()
        and not level.startswith("$")
        and not any(c in level for c in "+#/")
    )


def address_levels(address: str, *, multi_level: bool = False) -> list[str] | None:
    """A device's own topic address (uid, Tasmota topic, Shelly prefix) split, or None if unsafe.

    A ``+`` or ``#`` in an address would turn the ACL patterns built from it into wildcards
    granting other devices' topics, so such addresses are refused outright.
    """
    if not isinstance(address, str) or not address or len(address) > 256:
        return None
    levels = address.split("/")
    if len(levels) > 1 and not multi_level:
        return None
    return levels if all(valid_level(level) for level in levels) else None


def topic_address(address: str, what: str, *, multi_level: bool = False) -> str:
    """``address`` (``address_levels``) to build a command topic from; ``ValueError`` if unsafe."""
    if address_levels(address, multi_level=multi_level) is None:
        raise ValueError(f"{what} {short(address)} cannot be used in a topic")
    return address


def _covered(levels: list[str], pattern: list[str]) -> bool:
    """True when every topic ``levels`` (a topic or a filter) matches also matches ``pattern``."""
    for i, want in enumerate(pattern):
        if want == "#":
            return True
        if i >= len(levels):
            return False
        have = levels[i]
        if have == "#":
            return False
        if want != "+" and have != want:
            return False
    return len(levels) == len(pattern)


def acl_allows(
    topic: str,
    *,
    publish: bool,
    may_publish: Iterable[str],
    may_subscribe: Iterable[str],
) -> bool:
    """Whether a device may publish to ``topic`` / subscribe to filter ``topic``.

    Publishing needs a concrete topic (no wildcards) matching one of ``may_publish``;
    subscribing needs a filter no broader than one of ``may_subscribe``.
    """
    levels = topic_levels(topic) if publish else filter_levels(topic)
    if levels is None:
        return False
    patterns = may_publish if publish else may_subscribe
    return any(_covered(levels, pattern.split("/")) for pattern in patterns)
