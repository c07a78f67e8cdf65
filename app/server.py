"""The HTTP server at the edge: uvicorn, with a bound on what one connection may cost.

``python -m app`` may face the internet with no proxy in front, and uvicorn alone lets a
client hold a connection for as long as it likes: nothing times out a request head that
never ends (its keep-alive timer starts only after a first response), httptools takes a
head of any size (h11 caps it at 16 KiB), and every open socket is served. So each
connection here gets, whichever parser reads it (DNE_HTTP):

- a deadline for each request head (DNE_HEAD_TIMEOUT_S, from the connection's start or
  the previous response): 408, then closed;
- a cap on the head's size (DNE_MAX_HEAD_BYTES): 431, then closed;
- idle keep-alive connections closed after DNE_KEEP_ALIVE_S;
- beyond DNE_MAX_CONNECTIONS open connections, 503 with Retry-After.

The body has its own deadline in the app (``BodyDeadline`` in app/middleware.py), so it
holds for any server. Answers written here use the service's error shape, and every close
lingers: a client still sending (a 1 MB head, a body after a 413) reads the answer
instead of a TCP reset.
"""

from __future__ import annotations

import asyncio
from typing import Any, ClassVar

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from app.errors import error_bytes
from app.settings import Settings

STATUS_LINES = {
    400: b"400 Bad Request",
    408: b"408 Request Timeout",
    431: b"431 Request Header Fields Too Large",
    503: b"503 Service Unavailable",
}


def raw_response(status: int, detail: str, retry_after: int | None = None) -> bytes:
    body = error_bytes(detail)
    head = [
        b"HTTP/1.1 " + STATUS_LINES[status],
        b"content-type: application/json",
        b"content-length: " + str(len(body)).encode(),
        b"x-content-type-options: nosniff",
        b"connection: close",
    ]
    if retry_after is not None:
        head.append(b"retry-after: " + str(retry_after).encode())
    return b"\r\n".join(head) + b"\r\n\r\n" + body


async def over_capacity(scope: Any, receive: Any, send: Any) -> None:
    """The app a connection beyond DNE_MAX_CONNECTIONS gets: it answers its first
    request (answering before one arrives can be lost to a TCP reset) and closes."""
    body = error_bytes("too many open connections; try again shortly")
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"x-content-type-options", b"nosniff"),
        (b"retry-after", b"1"),
        (b"connection", b"close"),
    ]
    await send({"type": "http.response.start", "status": 503, "headers": headers})
    await send({"type": "http.response.body", "body": body})


LINGER_S = 2.0  # how long a closing connection keeps reading (and dropping) what comes


class LingeringTransport:
    """A transport whose ``close()`` half-closes (our answer, then FIN), drops whatever
    the client still sends for up to LINGER_S, then closes. Closing with unread bytes
    makes the kernel send a reset, which can destroy an answer the client has not read."""

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport, self._loop = transport, loop
        self.lingering = False
        self._timer: asyncio.TimerHandle | None = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)

    def close(self) -> None:
        if self.lingering or self._transport.is_closing():
            return
        if not self._transport.can_write_eof():
            self._transport.close()
            return
        self.lingering = True
        self._transport.write_eof()
        self._transport.resume_reading()  # flow control may have paused it
        self._timer = self._loop.call_later(LINGER_S, self.abort_linger)

    def abort_linger(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._transport.close()

    def is_closing(self) -> bool:
        return self.lingering or self._transport.is_closing()


class BoundedConnection:
    """Mixed into uvicorn's protocol classes (one instance per connection)."""

    max_head_bytes: ClassVar[int]
    head_timeout_s: ClassVar[float]
    max_connections: ClassVar[int]

    # uvicorn's attributes this class relies on (both protocols have them).
    transport: asyncio.Transport
    loop: asyncio.AbstractEventLoop
    connections: set[Any]
    cycle: Any
    app: Any

    def connection_made(self, transport: asyncio.Transport) -> None:
        lingering = LingeringTransport(transport, asyncio.get_running_loop())
        super().connection_made(lingering)  # type: ignore[misc]
        self._head_timer: asyncio.TimerHandle | None = None
        if len(self.connections) > self.max_connections:
            self.app = over_capacity
        self._await_head()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
        self.transport.abort_linger()  # type: ignore[attr-defined]
        super().connection_lost(exc)  # type: ignore[misc]

    def eof_received(self) -> bool | None:
        if self.transport.lingering:  # type: ignore[attr-defined]
            self.transport.abort_linger()  # type: ignore[attr-defined]
        return super().eof_received()  # type: ignore[misc]

    def on_response_complete(self) -> None:
        # Armed first: uvicorn may start a pipelined request inside the call below.
        self._await_head()
        super().on_response_complete()  # type: ignore[misc]

    def data_received(self, data: bytes) -> None:
        if self.transport.lingering:  # type: ignore[attr-defined]
            return  # after our last word: dropped
        if not self._reading_head():
            super().data_received(data)  # type: ignore[misc]
            return
        # Feed only what the head may still take; whatever is left over must then be
        # past the head's end (a body, the next request), or the head is too large.
        budget = max(self.max_head_bytes - self._head_bytes, 0)
        head, rest = data[:budget], data[budget:]
        self._head_bytes += len(head)
        if head:
            super().data_received(head)  # type: ignore[misc]
        if not self._reading_head():
            self._head_bytes = 0
        if not rest or self.transport.is_closing():
            return
        if self._reading_head():
            if self._in_flight():  # a pipelined head: no answer fits in mid-response
                self.transport.close()
            else:
                self._refuse(431, f"request head over {self.max_head_bytes} bytes")
            return
        self.data_received(rest)

    def send_400_response(self, msg: str) -> None:
        self._refuse(400, "the request is not valid HTTP/1.1")

    def _await_head(self) -> None:
        self._head_bytes = 0
        if self._head_timer is not None:
            self._head_timer.cancel()
        self._head_timer = self.loop.call_later(self.head_timeout_s, self._head_deadline)

    def _head_deadline(self) -> None:
        self._head_timer = None
        if self.transport.is_closing() or not self._reading_head() or self._in_flight():
            return  # a request is being served: its head came in time
        if self._head_bytes:
            self._refuse(408, f"request head not complete within {self.head_timeout_s:g} s")
        else:
            self.transport.close()  # an idle connection: nothing to answer

    def _refuse(self, status: int, detail: str) -> None:
        self.transport.write(raw_response(status, detail))
        self.transport.close()

    def _in_flight(self) -> bool:
        """A response is being produced on this connection."""
        return self.cycle is not None and not self.cycle.response_complete

    def _reading_head(self) -> bool:
        """The parser waits for (the rest of) a request head."""
        raise NotImplementedError


class BoundedH11(BoundedConnection, H11Protocol):
    conn: h11.Connection

    def _reading_head(self) -> bool:
        return self.conn.their_state is h11.IDLE


def bounded_httptools() -> type[asyncio.Protocol]:
    """Imported only when chosen: httptools is optional."""
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    class BoundedHttpTools(BoundedConnection, HttpToolsProtocol):
        _in_head = True  # before a message's head is complete

        def on_message_begin(self) -> None:
            self._in_head = True
            super().on_message_begin()

        def on_headers_complete(self) -> None:
            self._in_head, self._head_bytes = False, 0
            super().on_headers_complete()

        def on_message_complete(self) -> None:
            self._in_head = True  # what comes next is the next request's head
            super().on_message_complete()

        def _reading_head(self) -> bool:
            return self._in_head

        def _in_flight(self) -> bool:
            return super()._in_flight() or bool(self.pipeline)

    return BoundedHttpTools


def protocol_class(settings: Settings) -> type[asyncio.Protocol]:
    base = BoundedH11 if settings.http == "h11" else bounded_httptools()
    limits = {
        "max_head_bytes": settings.max_head_bytes,
        "head_timeout_s": settings.head_timeout_s,
        "max_connections": settings.max_connections,
    }
    return type(base.__name__, (base,), limits)


def server_config(
    app: Any, settings: Settings, host: str, port: int, log_level: str
) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=log_level,
        access_log=False,  # app/access.py writes one JSON line per request instead
        http=protocol_class(settings),
        h11_max_incomplete_event_size=settings.max_head_bytes,
        timeout_keep_alive=settings.keep_alive_s,  # type: ignore[arg-type]
        # The client's address comes from the peer, or from X-Forwarded-For only when
        # the peer is a configured proxy (DNE_TRUSTED_PROXIES, app/clients.py).
        proxy_headers=False,
        server_header=False,
    )
