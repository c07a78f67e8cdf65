"""The access log and request IDs: one JSON line per request, and ``X-Request-ID``.

A line says what an operator needs to follow one request (its ID, route template,
status, latency, cache result, the batch it rode in, the client) and nothing a client
sent as content: never a latent, a body or a raw path. Deeper code adds fields with
``note()``: it writes into a dict the middleware put in a context variable, which tasks
started for the request (the cache's single-flight painting) share.
"""

from __future__ import annotations

import json
import logging
import re
import secrets
import threading
import time
from contextvars import ContextVar
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.clients import ClientAddresses
from app.middleware import CLIENT_GONE

log = logging.getLogger("app.access")
RECORD: ContextVar[dict[str, Any] | None] = ContextVar("access_record", default=None)
# A client's own ID is kept only if it is plain: it goes back out in a header and into
# the log, so it must not carry anything else.
PLAIN_ID = re.compile(rb"[A-Za-z0-9._:-]{1,128}", re.ASCII)


class LineWriter(logging.StreamHandler):  # type: ignore[type-arg]
    """The access log's handler: one line per record, flushed at most every ``FLUSH_S``
    (by a background thread when traffic stops), not after every line: a flush is a
    system call per request (measured: the access log cost 17% of a cached request's
    throughput with one, benchmarks/serving.md)."""

    FLUSH_S = 0.5

    def __init__(self, stream: Any) -> None:
        super().__init__(stream)
        self._dirty = False
        threading.Thread(target=self._flush_often, name="access-log", daemon=True).start()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.stream.write(self.format(record) + self.terminator)
            self._dirty = True
        except Exception:
            self.handleError(record)

    def _flush_often(self) -> None:
        while True:
            time.sleep(self.FLUSH_S)
            if self._dirty:
                self._dirty = False
                self.flush()  # takes the handler's lock: never mid-line


def flush_access_log() -> None:
    for handler in log.handlers:
        handler.flush()


def note(**fields: Any) -> None:
    """Add fields to the current request's log line (no-op outside a request)."""
    record = RECORD.get()
    if record is not None:
        record.update(fields)


def request_id(scope: Scope) -> str:
    for name, value in scope["headers"]:
        if name == b"x-request-id" and PLAIN_ID.fullmatch(value):
            return value.decode()
    return secrets.token_hex(8)


class AccessLog:
    """Outermost middleware: takes or makes the request ID, returns it in
    ``X-Request-ID``, settles the client's address for everything inside
    (``scope["dne.client"]``), and logs the line when the request is over."""

    def __init__(self, app: ASGIApp, clients: ClientAddresses, enabled: bool = True) -> None:
        self.app, self.clients, self.enabled = app, clients, enabled

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        rid = request_id(scope)
        scope["dne.client"] = self.clients.of(scope)
        record: dict[str, Any] = {}
        token = RECORD.set(record)
        response: dict[str, Any] = {"status": None, "cache": None, "bytes": 0}

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [*message.get("headers", []), (b"x-request-id", rid.encode())]
                message = {**message, "headers": headers}
                response["status"] = message["status"]
                for name, value in headers:
                    if name == b"x-cache":
                        response["cache"] = value.decode()
            elif message["type"] == "http.response.body":
                response["bytes"] += len(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            RECORD.reset(token)
            if self.enabled:
                status = response["status"]
                if status is None:
                    status = CLIENT_GONE if scope.get("dne.client_gone") else 500
                line = {
                    "request_id": rid,
                    "method": scope["method"],
                    "route": getattr(scope.get("route"), "path", "unmatched"),
                    "status": status,
                    "latency_ms": round((time.perf_counter() - started) * 1000, 2),
                    "cache": response["cache"],
                    "batch_size": record.get("batch_size"),
                    "model": record.get("model"),
                    "bytes": response["bytes"],
                    "client": scope["dne.client"],
                }
                log.info(json.dumps(line, separators=(",", ":")))
