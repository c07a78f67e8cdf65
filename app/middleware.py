"""Pure ASGI middleware: request metrics by route template, the request body limit,
headers every response carries, and HEAD wherever GET is served."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.metrics import Metrics

CLIENT_GONE = 499  # nginx's code for "the client closed the connection first"


# Methods a label may name; any other (a client may send any token) counts as "other",
# or each made-up method would be a new series for ever.
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class RequestMetrics:
    """Counts and times every HTTP request, labelled by route template (``/seed/{seed}``),
    never by raw path, and by method from a fixed set: a label per seed or per invented
    method would grow without bound."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app, self.metrics = app, metrics
        # The labelled children, looked up once per label set: labels() validates and
        # locks on every call, a few percent of a cached request.
        self._children: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started, status = time.perf_counter(), None

        async def send_and_record(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_record)
        finally:
            if status is None:  # nothing sent: the client left first (499), or a crash
                status = CLIENT_GONE if scope.get("dne.client_gone") else 500
            route = getattr(scope.get("route"), "path", "unmatched")
            method = scope["method"] if scope["method"] in KNOWN_METHODS else "other"
            key = (route, method, status)
            children = self._children.get(key)
            if children is None:
                children = self._children[key] = (
                    self.metrics.requests.labels(route, method, str(status)),
                    self.metrics.request_seconds.labels(route),
                )
            children[0].inc()
            children[1].observe(time.perf_counter() - started)


class BodyLimit:
    """413 for bodies over ``max_bytes``: by Content-Length, and by counting chunked ones
    (neither uvicorn nor FastAPI limits bodies)."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        length = headers.get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_bytes):
            await self.reject(send)
            return
        received = 0

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    # An HTTPException: FastAPI turns other errors while reading into 400.
                    # The connection closes: the rest of the body is not worth reading.
                    raise HTTPException(
                        413,
                        f"request body over {self.max_bytes} bytes",
                        headers={"Connection": "close"},
                    )
            return message

        await self.app(scope, counting_receive, send)

    async def reject(self, send: Send) -> None:
        body = json.dumps(
            {"detail": f"request body over {self.max_bytes} bytes", "field": None}
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"x-content-type-options", b"nosniff"),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


class DefaultHeaders:
    """Headers on every response, errors and 404s included. ``nosniff``: a browser must
    take a PNG for a PNG and JSON for JSON, never guess HTML from bytes a client chose."""

    def __init__(self, app: ASGIApp, headers: dict[str, str]) -> None:
        self.app = app
        self.headers = [(k.lower().encode(), v.encode()) for k, v in headers.items()]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = {name for name, _ in message.get("headers", [])}
                extra = [(k, v) for k, v in self.headers if k not in present]
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        await self.app(scope, receive, send_with_headers)


class BodyDeadline:
    """408 for a request body that does not arrive within ``timeout_s`` of the app first
    asking for it (a client sending fewer bytes than its Content-Length, or one a
    second). The connection is closed after the answer: its remaining bytes are junk."""

    def __init__(self, app: ASGIApp, timeout_s: float) -> None:
        self.app, self.timeout_s = app, timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        deadline: float | None = None
        complete = False

        async def receive_in_time() -> Message:
            nonlocal deadline, complete
            if complete:  # after the body: waiting for a disconnect has no deadline
                return await receive()
            if deadline is None:
                deadline = asyncio.get_running_loop().time() + self.timeout_s
            try:
                async with asyncio.timeout_at(deadline):
                    message = await receive()
            except TimeoutError:
                raise HTTPException(
                    408,
                    f"request body not complete within {self.timeout_s:g} s",
                    headers={"Connection": "close"},
                ) from None
            complete = message["type"] != "http.request" or not message.get("more_body")
            return message

        await self.app(scope, receive_in_time, send)


class CancelOnDisconnect:
    """Cancels a request's handler when its client goes away.

    Starlette does not: a handler goes on to the end for a client that left, so its
    request would still take a place in a generator batch. Here, once the body is read
    (at once, for a request without one), a watcher waits for the server's
    ``http.disconnect`` and cancels the handler; the batcher then drops the request
    (its future is cancelled) and the cache's painting stops if no one else waits for
    it. Nothing is sent; ``scope["dne.client_gone"]`` tells the access log and metrics.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        bodiless = b"transfer-encoding" not in headers and headers.get(b"content-length") in (
            None,
            b"0",
        )
        body_read, gone = asyncio.Event(), asyncio.Event()
        taken: list[Message] = []  # a bodiless request's one message, read by the watcher
        responded = False

        handler = asyncio.current_task()
        assert handler is not None

        def client_left() -> None:
            gone.set()
            if not responded:
                scope["dne.client_gone"] = True
                handler.cancel()

        async def app_receive() -> Message:
            if bodiless:
                await body_read.wait()
                if taken:
                    return taken.pop()
            if body_read.is_set():  # the server has nothing more but the disconnect
                await gone.wait()
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.disconnect":
                client_left()  # in the middle of its body
            elif not message.get("more_body"):
                body_read.set()
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal responded
            if message["type"] == "http.response.body" and not message.get("more_body"):
                responded = True
            await send(message)

        async def watch() -> None:
            if bodiless:
                taken.append(await receive())
                body_read.set()
                if taken[0]["type"] == "http.disconnect":
                    client_left()
                    return
            await body_read.wait()
            if gone.is_set():
                return
            while (await receive())["type"] != "http.disconnect":
                pass  # nothing else comes after the body
            client_left()

        watcher = asyncio.create_task(watch())
        try:
            await self.app(scope, app_receive, tracking_send)
        except asyncio.CancelledError:
            if not scope.get("dne.client_gone") or handler.uncancel() > 0:
                raise  # cancelled by someone else too (the server shutting down)
        finally:
            watcher.cancel()


class HeadAsGet:
    """HEAD wherever GET is served (uptime checkers and link previews use it): the GET's
    status and headers, Content-Length included, without the body (RFC 9110 §9.3.2).
    FastAPI routes answer only the methods they name, so HEAD was a 405 everywhere."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "HEAD":
            await self.app(scope, receive, send)
            return
        # A copy: the server keeps reading the method from its own scope (it sends no
        # body for HEAD), and the metrics label the request HEAD.
        as_get = {**scope, "method": "GET"}

        async def send_without_body(message: Message) -> None:
            if message["type"] == "http.response.body":
                if message.get("more_body", False):
                    return
                message = {"type": "http.response.body", "body": b"", "more_body": False}
            await send(message)

        try:
            await self.app(as_get, receive, send_without_body)
        finally:
            # What the inner app noted (the route, for the metrics' and the access log's
            # labels; a client gone) belongs to this request; the method stays HEAD.
            scope.update({key: value for key, value in as_get.items() if key != "method"})
