"""What ``chatkeep serve`` adds around the app: the process's garbage collector tuned (:func:`served_app`), and
uvicorn's httptools protocol with the size of a request head bounded.

The request line and the headers of a request (its *head*) are refused with a ``431`` once they pass
``CHATKEEP_MAX_HEADER_BYTES``, before the rest is read, and the connection is closed. Neither uvicorn nor httptools
bounds a head: httptools gathers a header value into one ``bytes`` object, growing it chunk by chunk, and only then
hands it over, so a 100 MiB ``Authorization`` header was read and joined in full (seconds of the one event loop,
hundreds of megabytes) before the application could even answer 401. uvicorn's h11 protocol does bound a head
(``h11_max_incomplete_event_size``), but h11 parses in pure Python, much slower than httptools on every request.
Hence a subclass of uvicorn's httptools protocol, passed to uvicorn as its documented ``http=`` protocol class: it
only decides how much of what arrives is given to the parser, and when to stop.

Invariant: the parser never holds more than ``max_head_bytes`` of an unfinished head, except for a pipelined
request whose head starts in the same slice as the end of the previous request, which can have at most twice that.
"""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, ClassVar

from fastapi import APIRouter, FastAPI
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from chatkeep.api.app import create_app
from chatkeep.api.responses import dumps
from chatkeep.settings import Settings

__all__ = ["BoundedHttpToolsProtocol", "bounded_http_protocol", "served_app"]

log = logging.getLogger("chatkeep.api")

#: Allocations between two collections of the youngest generation, once the service has started.
YOUNG_GC_THRESHOLD = 50_000


def served_app(settings: Settings | None = None) -> FastAPI:
    """The app as ``chatkeep serve`` runs it (and the benchmarks, as ``uvicorn --factory``): :func:`create_app`,
    and with ``settings.tune_gc`` the process's garbage collector tuned once the app has started. That is the
    process's business, so only here: an app that mounts chatkeep, or calls ``create_app``, keeps its collector.
    """
    settings = settings or Settings()
    app = create_app(settings)
    if settings.tune_gc:
        # included last, so FastAPI runs this lifespan inside chatkeep's: after it has started
        app.include_router(APIRouter(lifespan=_tuned_gc))
    return app


@asynccontextmanager
async def _tuned_gc(_app: Any) -> AsyncIterator[None]:
    # What start-up built (modules, the app, the models' schemas) lives as long as the process: keep it out of the
    # garbage collector's full collections, which otherwise rescan those 100,000+ objects every few hundred
    # requests (milliseconds each, on the request that triggers one).
    gc.freeze()
    # And collect the young generation every 50,000 allocations instead of CPython's 700: a request builds its
    # objects (rows, parts, chunks) and drops them itself, so each young collection mostly rescans live objects and
    # promotes them to be rescanned again. Loading a 10,000-message thread spent a third of its time there (59 ms of
    # GC); now half as much. Older generations keep CPython's thresholds.
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(YOUNG_GC_THRESHOLD, older, oldest)
    yield


#: How long a refused connection keeps reading (and dropping) what the client still sends before it is closed: a
#: socket closed with unread data sends a reset, and the client would lose the 431 it has not read yet (nginx's
#: "lingering close" does the same).
LINGER_S = 5.0


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, refusing a request head longer than :attr:`max_head_bytes` with a 431.

    Data is given to the parser in slices no longer than the room left for the head being read, so the parser is
    never given more of a head than the limit; the callbacks mark where a head ends (``on_headers_complete``) and
    where the next one begins (``on_message_complete``).
    """

    max_head_bytes: ClassVar[int] = 64 * 1024

    _in_head = True
    _head_bytes = 0
    _refused = False
    _linger: asyncio.TimerHandle | None = None

    def data_received(self, data: bytes) -> None:
        if self._refused:  # drop whatever still comes, until the client or the timer closes the connection
            return
        while data:
            # A body is given in slices of the limit too: a pipelined head may start in the slice that ends the
            # previous request, uncounted; the slice's size bounds that.
            room = self.max_head_bytes - self._head_bytes if self._in_head else self.max_head_bytes
            if room <= 0:
                self._refuse()
                return
            piece, data = (data, b"") if len(data) <= room else (data[:room], data[room:])
            if self._in_head:
                self._head_bytes += len(piece)
            super().data_received(piece)
            if self.transport.is_closing() or self.transport.get_protocol() is not self:
                return  # the parser refused the request, or the connection became a WebSocket

    def on_headers_complete(self) -> None:
        self._in_head = False
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._in_head, self._head_bytes = True, 0
        super().on_message_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._linger is not None:
            self._linger.cancel()
        super().connection_lost(exc)

    def _refuse(self) -> None:
        self._refused = True
        limit = self.max_head_bytes
        log.warning("refused a request from %s: its line and headers pass %d bytes", _peer(self.client), limit)
        body = dumps(
            {
                "error": {
                    "code": "headers_too_large",
                    "message": f"The request line and headers are larger than the limit of {limit} bytes.",
                }
            }
        )
        head = [b"HTTP/1.1 431 Request Header Fields Too Large\r\n"]
        head += [name + b": " + value + b"\r\n" for name, value in self.server_state.default_headers]
        head += [
            b"content-type: application/json\r\n",
            b"content-length: %d\r\n" % len(body),
            b"connection: close\r\n\r\n",
        ]
        self.transport.write(b"".join(head) + body)
        if self.transport.can_write_eof():
            self.transport.write_eof()
            self._linger = self.loop.call_later(LINGER_S, self.transport.close)
        else:  # TLS cannot half-close: close now, as uvicorn does for a malformed request
            self.transport.close()


def bounded_http_protocol(max_head_bytes: int) -> type[BoundedHttpToolsProtocol]:
    """The protocol class to give uvicorn (``http=``) for heads of at most ``max_head_bytes``: uvicorn builds one
    instance per connection from the class, so the limit is a class attribute."""

    class Bounded(BoundedHttpToolsProtocol):
        pass

    Bounded.max_head_bytes = max_head_bytes
    return Bounded


def _peer(client: tuple[str, int] | None) -> str:
    return f"{client[0]}:{client[1]}" if client else "an unknown peer"
