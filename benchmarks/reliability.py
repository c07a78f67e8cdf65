"""Reliability at the edges: each scenario of docs/reliability.md, measured against a real
``python -m app`` with its default settings (the bundled model), as a Markdown table.

    python benchmarks/reliability.py --out benchmarks/reliability.md

Scenarios: hostile bodies and URLs, a head that never ends, a body shorter than its
Content-Length, a 1 MB header, an idle connection, a flood of idle connections, clients
that hang up before their image, a burst over the queue, a rate-limited client on two
replicas sharing Redis, Redis killed and hung. Each line says what was done, what the
service answered and how long it took. Takes about two minutes; other work on the
machine stretches the timings (the load average is recorded).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import httpx
from bench_random import cpu_model, free_port, serve
from prometheus_client.parser import text_string_to_metric_families
from report import prepend

from model_store import DEFAULT_ROOT

Row = tuple[str, str, str]  # scenario, what the service did, measured
Z_DIM = 128  # the bundled emoji model's


def start(env: dict[str, str], store: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    return serve(port, store, {"DNE_ACCESS_LOG": "false", **env}), f"http://127.0.0.1:{port}"


def stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    process.wait(timeout=30)


def metric(url: str, name: str, **labels: str) -> float:
    for family in text_string_to_metric_families(httpx.get(url + "/metrics").text):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return s.value
    return 0.0


def connect(url: str) -> socket.socket:
    host, port = url.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=60)


def until_closed(sock: socket.socket) -> tuple[bytes, float]:
    started, data = time.monotonic(), b""
    while chunk := sock.recv(65536):
        data += chunk
    return data, time.monotonic() - started


def status_of(raw: bytes) -> str:
    return raw.split(b" ", 2)[1].decode() if raw.startswith(b"HTTP/") else "closed"


# --- scenarios -----------------------------------------------------------------------

HOSTILE: list[tuple[str, str, dict]] = [
    ("post", "/generate", {"content": '{"latent": [NaN' + ", 0" * (Z_DIM - 1) + "]}"}),
    ("post", "/generate", {"content": '{"latent": [Infinity' + ", 0" * (Z_DIM - 1) + "]}"}),
    ("post", "/generate", {"content": '{"latent": [-Infinity' + ", 0" * (Z_DIM - 1) + "]}"}),
    ("post", "/generate", {"json": {"latent": [1e308] + [0] * (Z_DIM - 1)}}),
    ("post", "/generate", {"json": {"latent": [0.0] * 100_000}}),
    ("post", "/generate", {"content": "[" * 5000 + "]" * 5000}),
    ("post", "/generate", {"content": "[" * 20000 + "]" * 20000}),
    ("post", "/generate", {"content": '{"seed": ' + "9" * 5000 + "}"}),
    ("post", "/generate", {"content": b'{"seed": "\xff\xfe"}'}),
    ("post", "/generate", {"content": b"x" * 20_000_000}),
    ("post", "/generate", {"json": {"seed": 1, "model": "../../etc/passwd"}}),
    ("post", "/generate", {"json": {"latent": ["1"] + [0] * (Z_DIM - 1)}}),
    ("post", "/generate", {"json": {"latent": [True] + [0] * (Z_DIM - 1)}}),
    ("post", "/generate", {"json": {"seed": True}}),
    ("post", "/generate", {"json": {"seed": 1, "size": "256"}}),
    ("post", "/generate", {"json": {"seed": -1}}),
    ("post", "/generate", {"json": {"seed": 2**64}}),
    ("post", "/generate", {"content": '{"seed": 1, "truncation": 1e999}'}),
    ("get", "/models/emoji/1.0/seed/42", {}),
    ("get", "/random?category=\u0668", {}),
    ("get", "/seed/42?size=0256&foo=%3Cscript%3E", {}),
    ("get", "/models/%27%22%3Cb%3E/1/seed/42", {}),
    ("get", "/random?size=99999999999999999999999", {}),
    ("get", "/seed/18446744073709551616", {}),
]


def hostile_inputs(url: str) -> list[Row]:
    codes: Counter[int] = Counter()
    shapes = echoes = 0
    with httpx.Client(base_url=url, timeout=30) as client:
        for method, path, kwargs in HOSTILE:
            if "content" in kwargs:
                kwargs = {**kwargs, "headers": {"content-type": "application/json"}}
            r = client.request(method, path, **kwargs)
            codes[r.status_code] += 1
            body = r.json()
            shapes += set(body) == {"detail", "field"}
            echoes += any(bad in body["detail"] for bad in ("<b>", "<script>", "passwd", "\u0668"))
    return [
        (
            f"{len(HOSTILE)} hostile bodies and URLs (NaN/±Infinity/1e308 latents, 100,000 "
            "numbers, JSON 5,000 and 20,000 deep, a 5,000-digit seed, invalid UTF-8, 20 MB, a "
            "path as model name, strings and booleans for numbers, Arabic-Indic digits, "
            "`1.0` as version, markup in names and unknown parameters)",
            f"{dict(sorted(codes.items()))}; the error shape {shapes}/{len(HOSTILE)}",
            f"inputs echoed: {echoes}; 5xx: {sum(n for c, n in codes.items() if c >= 500)}",
        )
    ]


def slow_head(url: str) -> list[Row]:
    sock = connect(url)
    started = time.monotonic()
    sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
    while True:  # one header line a second, for as long as the server listens
        try:
            sock.sendall(b"X-Slow: 1\r\n")
        except OSError:
            break
        sock.settimeout(1.0)
        try:
            raw = sock.recv(65536)
            break
        except TimeoutError:
            continue
    elapsed = time.monotonic() - started
    sock.close()
    return [
        (
            "a request head dribbled at one line a second, never finished",
            f"{status_of(raw)}, connection closed (DNE_HEAD_TIMEOUT_S=10)",
            f"after {elapsed:.1f} s",
        )
    ]


def answer_and_close(url: str, request: bytes) -> tuple[str, float]:
    """Send ``request``; the status the server answers and the seconds until it closes."""
    sock = connect(url)
    started = time.monotonic()
    sock.sendall(request)
    raw, _ = until_closed(sock)
    sock.close()
    return status_of(raw), time.monotonic() - started


def short_body(url: str) -> list[Row]:
    status, seconds = answer_and_close(
        url,
        b"POST /generate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 100\r\n\r\n" + b'{"seed": 1',
    )
    return [
        (
            "a body 90 bytes shorter than its Content-Length",
            f"{status}, connection closed (DNE_BODY_TIMEOUT_S=10)",
            f"after {seconds:.1f} s",
        )
    ]


def big_head(url: str) -> list[Row]:
    status, seconds = answer_and_close(
        url, b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 2**20 + b"\r\n\r\n"
    )
    return [
        (
            "a 1 MB request header",
            f"{status} (DNE_MAX_HEAD_BYTES=16 KiB), connection closed",
            f"after {seconds * 1000:.0f} ms",
        )
    ]


def idle(url: str) -> list[Row]:
    silent = connect(url)
    _, silent_s = until_closed(silent)
    kept = connect(url)
    kept.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    time.sleep(0.2)
    kept.recv(65536)
    _, kept_s = until_closed(kept)
    silent.close()
    kept.close()
    return [
        ("a connection that sends nothing", "closed without an answer", f"after {silent_s:.1f} s"),
        (
            "a keep-alive connection left idle",
            "closed (DNE_KEEP_ALIVE_S=5)",
            f"after {kept_s:.1f} s",
        ),
    ]


def flood(url: str, n: int = 1100) -> list[Row]:
    held = [connect(url) for _ in range(n)]  # 1,000 is the default limit
    try:
        time.sleep(0.5)
        extra = connect(url)
        extra.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        raw, _ = until_closed(extra)
        extra.close()
    finally:
        for sock in held:
            sock.close()
    deadline = time.monotonic() + 10
    while True:  # the closed ones are gone once the server has noticed
        try:
            started = time.monotonic()
            ok = httpx.get(url + "/healthz", timeout=5).status_code
            break
        except httpx.HTTPError:
            if time.monotonic() > deadline:
                ok = 0
                break
            time.sleep(0.1)
    retry = b"retry-after: 1" in raw.lower()
    return [
        (
            f"{n} idle connections held open, then one more request",
            f"{status_of(raw)}{' with Retry-After' if retry else ''} (DNE_MAX_CONNECTIONS=1000)",
            f"a request after they closed: {ok} in {(time.monotonic() - started) * 1000:.0f} ms",
        )
    ]


async def hang_ups(url: str, n: int = 20) -> list[Row]:
    painted = metric(url, "dne_images_generated_total")
    abandoned = metric(url, "dne_rejections_total", reason="abandoned")
    socks = []
    for seed in range(n):
        sock = connect(url)
        sock.sendall(f"GET /models/emoji/1/seed/{seed}?size=8 HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        socks.append(sock)
    await asyncio.sleep(0.1)
    for sock in socks:
        sock.close()  # before DNE_MAX_DELAY_MS=1000 has filled a batch
    await asyncio.sleep(2)
    dropped = metric(url, "dne_rejections_total", reason="abandoned") - abandoned
    return [
        (
            f"{n} clients that hang up 0.1 s after asking (batch window 1 s)",
            "dropped from the batch, nothing painted",
            f"painted {metric(url, 'dne_images_generated_total') - painted:.0f}, "
            f"counted abandoned {dropped:.0f}",
        )
    ]


async def burst(url: str, requests: int = 1000, clients: int = 200) -> list[Row]:
    codes: Counter[str] = Counter()
    retry_after = 0
    limits = httpx.Limits(max_connections=clients)
    started = time.monotonic()
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=60) as client:

        async def one(seed: int) -> None:
            nonlocal retry_after
            r = await client.post("/generate", json={"seed": seed})
            codes[str(r.status_code)] += 1
            retry_after += r.status_code == 503 and r.headers.get("retry-after") == "1"

        await asyncio.gather(*(one(s) for s in range(requests)))
    return [
        (
            f"a burst of {requests:,} uncached requests from {clients} connections, queue of 16",
            f"{dict(sorted(codes.items()))}; every 503 with Retry-After: "
            f"{retry_after == codes['503']}",
            f"all answered in {time.monotonic() - started:.1f} s",
        )
    ]


def rate_limited(urls: list[str]) -> list[Row]:
    codes: Counter[str] = Counter()
    retry: set[str] = set()
    started = time.monotonic()
    with httpx.Client(timeout=30) as client:
        for i in range(40):  # one client, alternating between the two replicas
            r = client.get(urls[i % 2] + "/random?size=8")
            codes[str(r.status_code)] += 1
            if r.status_code == 429:
                retry.add(r.headers["retry-after"])
    seconds = time.monotonic() - started
    return [
        (
            "one client, 40 quick requests alternating between two replicas sharing Redis "
            "(DNE_RATE_LIMIT_PER_S=1, DNE_RATE_LIMIT_BURST=10)",
            f"{dict(sorted(codes.items()))}; Retry-After {sorted(retry)}",
            f"{codes['200']} allowed in {seconds:.1f} s: one bucket for both replicas "
            f"(at most 10 + {seconds:.0f} refilled)",
        )
    ]


def redis_faults(
    url: str, redis: subprocess.Popen[bytes], respawn: Callable[[], object]
) -> list[Row]:
    rows = []
    with httpx.Client(base_url=url, timeout=30) as client:
        client.get("/models/emoji/1/seed/1")

        def forty_pinned(first_seed: int) -> tuple[Counter[int], list[float]]:
            times, codes = [], Counter()
            for seed in range(first_seed, first_seed + 40):
                started = time.monotonic()
                codes[client.get(f"/models/emoji/1/seed/{seed}").status_code] += 1
                times.append((time.monotonic() - started) * 1000)
            return codes, sorted(times)

        redis.send_signal(signal.SIGSTOP)  # hung: accepts, never answers
        codes, times = forty_pinned(2)
        rows.append(
            (
                "Redis hung (SIGSTOP), 40 pinned requests",
                f"{dict(codes)}, served uncached",
                f"slowest {times[-1]:.0f} ms, median {times[20]:.0f} ms",
            )
        )
        redis.send_signal(signal.SIGCONT)
        redis.kill()
        redis.wait()
        codes, times = forty_pinned(42)
        rows.append(
            (
                "Redis killed, 40 pinned requests",
                f"{dict(codes)}, served uncached",
                f"median {times[20]:.0f} ms",
            )
        )
        respawn()
        time.sleep(3)  # the breaker's cool-down, then the probe finds it
        client.get("/models/emoji/1/seed/500")
        hit = client.get("/models/emoji/1/seed/500").headers["x-cache"]
        rows.append(("Redis back", "cache used again", f"second request: {hit}"))
    return rows


def start_redis(folder: Path, port: int | None = None) -> tuple[subprocess.Popen[bytes], str]:
    """A redis-server without persistence, on ``port`` (default: a free one), once it
    accepts connections."""
    port = port or free_port()
    process = subprocess.Popen(
        [
            shutil.which("redis-server") or "redis-server",
            "--port",
            str(port),
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(folder),
        ],
        stdout=subprocess.DEVNULL,
    )
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.05)
    return process, f"redis://127.0.0.1:{port}/0"


def run(store: Path) -> list[Row]:
    rows: list[Row] = []
    process, url = start({"DNE_MAX_DELAY_MS": "1000"}, store)
    try:
        rows += hostile_inputs(url)
        rows += big_head(url)
        rows += short_body(url)
        rows += slow_head(url)
        rows += idle(url)
        rows += flood(url)
        rows += asyncio.run(hang_ups(url))
    finally:
        stop(process)
    process, url = start({"DNE_QUEUE_SIZE": "16"}, store)
    try:
        rows += asyncio.run(burst(url))
    finally:
        stop(process)
    with tempfile.TemporaryDirectory() as folder:
        redis, redis_url = start_redis(Path(folder))
        env = {
            "DNE_REDIS_URL": redis_url,
            "DNE_RATE_LIMIT_PER_S": "1",
            "DNE_RATE_LIMIT_BURST": "10",
        }
        one, url_one = start(env, store)
        two, url_two = start(env, store)
        try:
            rows += rate_limited([url_one, url_two])
        finally:
            stop(two)
            stop(one)
        port = int(redis_url.rsplit(":", 1)[1].split("/")[0])
        process, url = start({"DNE_REDIS_URL": redis_url}, store)
        respawned: list[subprocess.Popen[bytes]] = []

        def respawn() -> None:  # the same Redis again, on its port
            respawned.append(start_redis(Path(folder), port)[0])

        try:
            rows += redis_faults(url, redis, respawn)
        finally:
            stop(process)
            for r in [redis, *respawned]:
                if r.poll() is None:
                    r.kill()
                    r.wait()
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", type=Path, default=DEFAULT_ROOT, help="model store folder")
    parser.add_argument("--out", type=Path, help="Markdown file to write the table to")
    parser.add_argument("--note", help="a line for the results: what else ran, and so on")
    args = parser.parse_args()
    load_before = os.getloadavg()[0]
    rows = run(args.store)
    lines = [
        f"### {dt.datetime.now():%Y-%m-%d %H:%M}: {os.cpu_count()} CPUs, {cpu_model()}",
        "",
        f"Command: `python {shlex.join(sys.argv)}`  ",
        f"Load average (1 min) before: {load_before:.2f}, after: {os.getloadavg()[0]:.2f}"
        + (f"  \n{args.note}" if args.note else ""),
        "",
        "| scenario | the service | measured |",
        "|---|---|---|",
        *(f"| {a} | {b} | {c} |" for a, b, c in rows),
        "",
    ]
    text = "\n".join(lines)
    print(text)
    if args.out:
        prepend(args.out, text, "# Reliability scenarios, measured\n\n")
        print(f"written to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
