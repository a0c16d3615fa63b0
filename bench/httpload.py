"""A lean HTTP/1.1 load generator for the ingest benchmarks.

A Python client costs more CPU per request than the server it measures (httpx spends about
as long building and parsing a request as wattwatch spends storing 1,000 readings), and on a
2-core machine the client's CPU is taken from the server. This one keeps ``connections``
keep-alive connections open, writes each request as bytes prepared before the clock starts
and reads back only the status line, the headers it needs and the JSON body: what a
collector or gateway that uploads batches does, at the least CPU per request.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

import orjson


@dataclass(frozen=True, slots=True)
class Request:
    """A prepared POST: headers and body as bytes."""

    data: bytes


def post(host: str, path: str, body: bytes, headers: dict[str, str]) -> Request:
    head = [f"POST {path} HTTP/1.1", f"Host: {host}", f"Content-Length: {len(body)}"]
    head += [f"{k}: {v}" for k, v in headers.items()]
    return Request(("\r\n".join(head) + "\r\n\r\n").encode() + body)


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split(b" ", 2)[1])
    length = 0
    chunked = False
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        key = name.strip().lower()
        if key == b"content-length":
            length = int(value)
        elif key == b"transfer-encoding" and b"chunked" in value.lower():
            chunked = True
    if not chunked:
        return status, await reader.readexactly(length)
    parts = []
    while True:
        size = int((await reader.readuntil(b"\r\n")).strip().split(b";")[0], 16)
        chunk = await reader.readexactly(size + 2)
        if size == 0:
            return status, b"".join(parts)
        parts.append(chunk[:-2])


async def send_all(
    host: str, port: int, requests: Sequence[Request], connections: int
) -> list[dict[str, object]]:
    """Send every request once over ``connections`` keep-alive connections; return the
    JSON answers in request order. Raises on any answer other than 200."""
    answers: list[dict[str, object]] = [{} for _ in requests]
    todo = iter(range(len(requests)))

    async def worker() -> None:
        reader, writer = await asyncio.open_connection(host, port)
        try:
            for i in todo:
                writer.write(requests[i].data)
                status, body = await _read_response(reader)
                if status != 200:
                    raise RuntimeError(f"request {i}: HTTP {status}: {body[:300]!r}")
                answers[i] = orjson.loads(body)
        finally:
            writer.close()

    await asyncio.gather(*(worker() for _ in range(connections)))
    return answers
