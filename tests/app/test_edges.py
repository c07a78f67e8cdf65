"""Slow and oversized requests against a real ``python -m app``, over real sockets that
dribble bytes, with each HTTP parser the service can use (h11 and httptools)."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from .conftest import free_port
from .test_api import metric
from .test_process import start_app, wait_for

LIMIT_S = 1.0  # head, body and keep-alive timeouts of the server under test
SLACK_S = 2.0  # what a busy 2-core machine may add before the server acts
MAX_CONNECTIONS = 12
BATCH_WINDOW_S = 1.0  # a lone request waits this long for its batch to fill


@pytest.fixture(scope="module", params=["h11", "httptools"])
def edge(request: pytest.FixtureRequest, store_root: Path) -> Iterator[tuple[str, int]]:
    port = free_port()
    process = start_app(
        store_root,
        port,
        DNE_HTTP=request.param,
        DNE_HEAD_TIMEOUT_S=str(LIMIT_S),
        DNE_BODY_TIMEOUT_S=str(LIMIT_S),
        DNE_KEEP_ALIVE_S=str(LIMIT_S),
        DNE_MAX_CONNECTIONS=str(MAX_CONNECTIONS),
        DNE_MAX_DELAY_MS=str(BATCH_WINDOW_S * 1000),  # time for a client to leave
        DNE_CACHE_MAX_BYTES="0",
        DNE_RANDOM_POOL="0",  # every batch here is one a test asked for
    )
    try:
        wait_for(f"http://127.0.0.1:{port}/readyz", process)
        yield "127.0.0.1", port
    finally:
        process.terminate()
        process.communicate(timeout=20)


@pytest.fixture
def connect(edge: tuple[str, int]) -> Iterator[Callable[[], socket.socket]]:
    """Opens sockets to the server; each is closed after the test."""
    opened: list[socket.socket] = []

    def open_one() -> socket.socket:
        opened.append(socket.create_connection(edge, timeout=10))
        return opened[-1]

    yield open_one
    for sock in opened:
        sock.close()


def read_all(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes (the socket's timeout bounds it)."""
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def read_response(sock: socket.socket) -> bytes:
    """One whole response (head and Content-Length body), leaving the connection open."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(
        next(
            line for line in head.lower().split(b"\r\n") if line.startswith(b"content-length")
        ).split(b":")[1]
    )
    while len(body) < length:
        body += sock.recv(65536)
    return head + b"\r\n\r\n" + body


def status_and_body(raw: bytes) -> tuple[int, dict]:
    head, _, body = raw.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    assert b"x-content-type-options: nosniff" in head.lower(), head
    return status, json.loads(body)


def still_serves(edge: tuple[str, int]) -> None:
    r = httpx.get(f"http://{edge[0]}:{edge[1]}/healthz", timeout=5)
    assert r.status_code == 200


def test_a_head_that_never_ends_gets_408_and_is_closed(edge, connect) -> None:
    sock = connect()
    started = time.monotonic()
    sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
    for _ in range(3):  # dribbling keeps it busy, not alive
        time.sleep(LIMIT_S / 4)
        sock.sendall(b"X-A: b\r\n")
    raw = read_all(sock)
    assert time.monotonic() - started < LIMIT_S + SLACK_S
    status, body = status_and_body(raw)
    assert status == 408 and body["field"] is None and "head" in body["detail"]
    still_serves(edge)


def test_a_connection_that_sends_nothing_is_closed(edge, connect) -> None:
    sock = connect()
    started = time.monotonic()
    assert read_all(sock) == b""
    assert time.monotonic() - started < LIMIT_S + SLACK_S


def test_a_body_shorter_than_its_content_length_gets_408(edge, connect) -> None:
    sock = connect()
    started = time.monotonic()
    sock.sendall(
        b"POST /generate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 100\r\n\r\n" + b'{"seed": 1'
    )
    raw = read_all(sock)
    assert time.monotonic() - started < LIMIT_S + SLACK_S
    status, body = status_and_body(raw)
    assert status == 408 and "body" in body["detail"]
    still_serves(edge)


def test_a_megabyte_of_headers_gets_431(edge, connect) -> None:
    sock = connect()
    head = b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + b"X-Big: " + b"a" * 2**20 + b"\r\n\r\n"
    sock.sendall(head)  # all of it: the server reads on (and drops) after its answer
    status, body = status_and_body(read_all(sock))
    assert status == 431 and "16384 bytes" in body["detail"]
    still_serves(edge)


def test_a_head_just_under_the_limit_and_a_body_in_one_write_are_served(edge, connect) -> None:
    body = b'{"seed": 3,' + b" " * 40000 + b'"size": 8}'  # more than the head may take
    padding = b"X-Pad: " + b"p" * (16 * 1024 - 200) + b"\r\n"
    request = (
        b"POST /generate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        + padding
        + b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(body)
        + body
    )
    sock = connect()
    sock.sendall(request)
    raw = read_all(sock)
    assert raw.startswith(b"HTTP/1.1 200"), raw[:200]


def test_garbage_gets_400_in_the_error_shape(edge, connect) -> None:
    sock = connect()
    sock.sendall(b"\x16\x03\x01 this is no HTTP\r\n\r\n")
    status, body = status_and_body(read_all(sock))
    assert status == 400 and body == {"detail": "the request is not valid HTTP/1.1", "field": None}


def test_an_idle_keep_alive_connection_is_closed(edge, connect) -> None:
    sock = connect()
    sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    assert read_response(sock).startswith(b"HTTP/1.1 200")
    started = time.monotonic()
    assert read_all(sock) == b""  # closed by the server, with nothing more to say
    assert time.monotonic() - started < LIMIT_S + SLACK_S


def test_keep_alive_still_serves_several_requests_on_one_connection(edge, connect) -> None:
    with httpx.Client(base_url=f"http://{edge[0]}:{edge[1]}") as client:
        for _ in range(3):
            assert client.get("/healthz").status_code == 200
            time.sleep(LIMIT_S / 4)


def test_connections_beyond_the_limit_get_503_and_the_others_are_served(edge, connect) -> None:
    idle = [connect() for _ in range(MAX_CONNECTIONS)]  # slow clients holding sockets
    try:
        sock = connect()
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        raw = read_all(sock)
        status, body = status_and_body(raw)
        assert (
            status == 503 and b"retry-after: 1" in raw.lower() and "connections" in body["detail"]
        )
    finally:
        for s in idle:
            s.close()
    deadline = time.monotonic() + 5
    while True:  # the closed ones are gone once the server has noticed
        try:
            still_serves(edge)
            return
        except AssertionError:
            assert time.monotonic() < deadline
            time.sleep(0.1)


def test_slow_clients_do_not_hold_up_a_quick_one(edge, connect) -> None:
    slow = []
    for _ in range(MAX_CONNECTIONS // 2):
        sock = connect()
        sock.sendall(b"GET /healthz HTTP/1.1\r\n")  # and then nothing more
        slow.append(sock)
    try:
        started = time.monotonic()
        still_serves(edge)
        assert time.monotonic() - started < 1
    finally:
        for s in slow:
            s.close()


def test_a_client_that_hangs_up_is_dropped_from_its_batch(edge, connect) -> None:
    base = f"http://{edge[0]}:{edge[1]}"

    def counts() -> tuple[float, float]:
        text = httpx.get(base + "/metrics").text
        return (
            metric(text, "dne_images_generated_total"),
            metric(text, "dne_rejections_total", reason="abandoned"),
        )

    painted, abandoned = counts()
    sock = connect()
    sock.sendall(b"GET /models/emoji/1/seed/77?size=8 HTTP/1.1\r\nHost: x\r\n\r\n")
    time.sleep(BATCH_WINDOW_S / 5)
    sock.close()  # before the batch runs
    time.sleep(BATCH_WINDOW_S * 1.5)
    assert counts() == (painted, abandoned + 1)
    assert httpx.get(base + "/models/emoji/1/seed/77?size=8").status_code == 200
    assert counts()[0] == painted + 1
