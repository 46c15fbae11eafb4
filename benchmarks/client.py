"""A lean HTTP/1.1 client for the load generator: one keep-alive connection per virtual client, responses parsed
by httptools (the C parser uvicorn uses), timestamps taken when bytes arrive.

httpx and aiohttp cost tens of microseconds per request and per chunk in the load generator, which on a two-core
machine competes with the server being measured; this client does only what the benchmarks need: a request line,
a few headers, a body, and the response's status, headers and body (or each body piece, with its arrival time,
for server-sent events).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from time import perf_counter
from typing import cast

import httptools
import orjson

__all__ = ["BodySink", "Connection", "HttpError", "Response", "SseCollector", "get_json"]

#: Called with each piece of a response body and the ``perf_counter()`` time it arrived.
BodySink = Callable[[bytes, float], None]


class HttpError(Exception):
    """The connection failed or the response could not be parsed."""


@dataclass(slots=True)
class Response:
    status: int
    headers: dict[str, str]
    body: bytes
    #: ``perf_counter()`` times: request written, headers received, last byte received
    sent_at: float
    headers_at: float
    done_at: float

    @property
    def elapsed(self) -> float:
        return self.done_at - self.sent_at

    def json(self) -> object:
        return orjson.loads(self.body)


class _Protocol(asyncio.Protocol):
    def __init__(self) -> None:
        self._parser = httptools.HttpResponseParser(self)
        self._transport: asyncio.Transport | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._now = 0.0
        self.lost: BaseException | None = None
        self.status = 0
        self.headers: dict[str, str] = {}
        self.chunks: list[bytes] = []
        self.sink: BodySink | None = None
        self.headers_at = 0.0
        self.done_at = 0.0

    # -- asyncio.Protocol --------------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's transports are not its subclasses

    def data_received(self, data: bytes) -> None:
        self._now = perf_counter()
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(HttpError(f"bad response: {exc}"))

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = exc or HttpError("connection closed by the server")
        self._fail(self.lost)

    # -- httptools callbacks -------------------------------------------------------------------------------

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers[name.decode("latin-1").lower()] = value.decode("latin-1")

    def on_headers_complete(self) -> None:
        self.status = self._parser.get_status_code()
        self.headers_at = self._now

    def on_body(self, body: bytes) -> None:
        if self.sink is not None:
            self.sink(body, self._now)
        else:
            self.chunks.append(body)

    def on_message_complete(self) -> None:
        self.done_at = self._now
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    # -- driving -------------------------------------------------------------------------------------------

    def _fail(self, exc: BaseException) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(exc)

    def start(self, payload: bytes, sink: BodySink | None) -> asyncio.Future[None]:
        if self.lost is not None or self._transport is None:
            raise HttpError("connection is closed")
        self.status = 0
        self.headers = {}
        self.chunks = []
        self.sink = sink
        self._waiter = asyncio.get_running_loop().create_future()
        self._transport.write(payload)
        return self._waiter

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()


@dataclass
class Connection:
    """One keep-alive HTTP/1.1 connection to ``host:port``; requests on it run one at a time."""

    host: str
    port: int
    _protocol: _Protocol = field(repr=False)

    @classmethod
    async def open(cls, host: str, port: int) -> Connection:
        loop = asyncio.get_running_loop()
        _, protocol = await loop.create_connection(_Protocol, host, port)
        return cls(host, port, protocol)

    async def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        *,
        headers: Mapping[str, str] | None = None,
        sink: BodySink | None = None,
        limit_s: float = 120.0,
    ) -> Response:
        """Send one request and wait for the whole response. With ``sink``, body pieces go there as they
        arrive (with their arrival time) instead of into :attr:`Response.body`."""
        lines = [f"{method} {path} HTTP/1.1", f"Host: {self.host}:{self.port}"]
        if body is not None:
            lines.append("Content-Type: application/json")
            lines.append(f"Content-Length: {len(body)}")
        for name, value in (headers or {}).items():
            lines.append(f"{name}: {value}")
        payload = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (body or b"")
        protocol = self._protocol
        sent_at = perf_counter()
        waiter = protocol.start(payload, sink)
        try:
            await asyncio.wait_for(waiter, limit_s)
        except TimeoutError:
            protocol.close()
            raise HttpError(f"{method} {path}: no complete response within {limit_s:g} s") from None
        return Response(
            status=protocol.status,
            headers=protocol.headers,
            body=b"".join(protocol.chunks),
            sent_at=sent_at,
            headers_at=protocol.headers_at,
            done_at=protocol.done_at,
        )

    def close(self) -> None:
        self._protocol.close()


async def get_json(host: str, port: int, path: str) -> object:
    """One GET on a fresh connection, decoded as JSON (for checks, not for timing)."""
    connection = await Connection.open(host, port)
    try:
        response = await connection.request("GET", path)
    finally:
        connection.close()
    if response.status != 200:
        raise HttpError(f"GET {path}: HTTP {response.status}: {response.body[:300]!r}")
    return response.json()


class SseCollector:
    """A body sink for a UI message stream: splits it into SSE frames, decodes each, and keeps the arrival time
    of every frame and of every ``text-delta``, the text they carry, and the reply's ``messageId``."""

    __slots__ = ("_tail", "delta_times", "done", "first_frame_at", "frame_types", "frames", "message_id", "text")

    def __init__(self) -> None:
        self._tail = b""
        self.frames = 0
        self.first_frame_at = 0.0
        self.delta_times: list[float] = []
        self.frame_types: list[str] = []
        self.text: list[str] = []
        self.message_id: str | None = None
        self.done = False

    def __call__(self, data: bytes, now: float) -> None:
        buffer = self._tail + data if self._tail else data
        pieces = buffer.split(b"\n\n")
        self._tail = pieces.pop()
        for frame in pieces:
            if not frame:
                continue
            if self.frames == 0:
                self.first_frame_at = now
            self.frames += 1
            payload = frame[6:] if frame.startswith(b"data: ") else frame
            if payload == b"[DONE]":
                self.done = True
                self.frame_types.append("[DONE]")
                continue
            chunk = orjson.loads(payload)
            kind = chunk["type"]
            self.frame_types.append(kind)
            if kind == "text-delta":
                self.delta_times.append(now)
                self.text.append(chunk["delta"])
            elif kind == "start":
                self.message_id = chunk.get("messageId")

    @property
    def full_text(self) -> str:
        return "".join(self.text)
