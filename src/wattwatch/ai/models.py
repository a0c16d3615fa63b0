"""Model lifecycle: serialise a trained model with version and metrics metadata, load it back."""

from __future__ import annotations

import json
import pickle
import time
import zlib
from dataclasses import dataclass, field
from typing import Any

import wattwatch

# Bumped when the layout of a saved blob changes; loading refuses other formats.
FORMAT = "wattwatch-model/1"
_MAGIC = b"WWMODEL1"


class ModelFormatError(ValueError):
    """The bytes are not a wattwatch model blob this version can read."""


@dataclass(frozen=True, slots=True)
class ModelMeta:
    """What a saved model is: kind, its own version, the metrics it scored and when."""

    kind: str
    version: int
    metrics: dict[str, Any] = field(default_factory=dict)
    created_ms: int = 0
    library_version: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def dump_model(
    model: object,
    kind: str,
    version: int,
    metrics: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
) -> bytes:
    """Bytes holding a JSON header (format, meta) and the zlib-compressed pickled model.

    Only load blobs you produced: like any pickle, loading runs code from the blob.
    """
    meta = {
        "format": FORMAT,
        "kind": kind,
        "version": int(version),
        "metrics": metrics or {},
        "created_ms": int(time.time() * 1000),
        "library_version": getattr(wattwatch, "__version__", ""),
        "extra": extra or {},
    }
    header = json.dumps(meta, sort_keys=True, default=float).encode()
    payload = zlib.compress(pickle.dumps(model, protocol=pickle.HIGHEST_PROTOCOL), 6)
    return _MAGIC + len(header).to_bytes(4, "big") + header + payload


def read_meta(blob: bytes) -> ModelMeta:
    """The metadata of a blob, without unpickling the model."""
    return _split(blob)[0]


def load_model(blob: bytes, expected_kind: str | None = None) -> tuple[Any, ModelMeta]:
    """(model, meta) from bytes made by ``dump_model``."""
    meta, payload = _split(blob)
    if expected_kind is not None and meta.kind != expected_kind:
        raise ModelFormatError(f"expected a {expected_kind!r} model, got {meta.kind!r}")
    try:
        model = pickle.loads(zlib.decompress(payload))
    except (pickle.UnpicklingError, EOFError, ValueError, zlib.error) as exc:
        raise ModelFormatError(f"corrupt model payload: {exc}") from exc
    return model, meta


def _split(blob: bytes) -> tuple[ModelMeta, bytes]:
    if not blob.startswith(_MAGIC) or len(blob) < len(_MAGIC) + 4:
        raise ModelFormatError("not a wattwatch model blob")
    n = int.from_bytes(blob[len(_MAGIC) : len(_MAGIC) + 4], "big")
    start = len(_MAGIC) + 4
    try:
        raw = json.loads(blob[start : start + n])
    except ValueError as exc:
        raise ModelFormatError("corrupt model header") from exc
    if raw.get("format") != FORMAT:
        raise ModelFormatError(f"unsupported model format {raw.get('format')!r}")
    meta = ModelMeta(
        kind=str(raw["kind"]),
        version=int(raw["version"]),
        metrics=dict(raw.get("metrics", {})),
        created_ms=int(raw.get("created_ms", 0)),
        library_version=str(raw.get("library_version", "")),
        extra=dict(raw.get("extra", {})),
    )
    return meta, blob[start + n :]
