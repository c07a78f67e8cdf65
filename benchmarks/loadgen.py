"""A bounded HTTP/1.1 load generator, for hosts without wrk (the GPU machine).

    python benchmarks/loadgen.py http://127.0.0.1:8000/random --connections 256 \
        --seconds 10 --processes 4

Each process keeps its share of the connections busy (keep-alive, one request in flight
per connection, a 10 s timeout each) for the given time and reports every latency; the
parent merges them into one JSON object on stdout: requests, req/s, p50/p90/p99 in ms,
statuses, errors, and the client's own CPU seconds. Bounded: it stops by itself, and it
only ever talks to the URL it is given. Uses uvloop where installed. The client shares
the host's cores with the server: its CPU seconds are reported so a reader can see how
much it took.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import subprocess
import sys
import time
from collections import Counter
from urllib.parse import urlsplit

TIMEOUT_S = 10.0


async def one_connection(
    host: str, port: int, request: bytes, stop_at: float, latencies: list[float], seen: Counter
) -> None:
    reader = writer = None
    while time.perf_counter() < stop_at:
        try:
            if writer is None:
                reader, writer = await asyncio.open_connection(host, port)
            started = time.perf_counter()
            async with asyncio.timeout(TIMEOUT_S):
                writer.write(request)
                head = await reader.readuntil(b"\r\n\r\n")
                length, close = 0, False
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    name = name.strip().lower()
                    if name == b"content-length":
                        length = int(value)
                    elif name == b"connection" and value.strip().lower() == b"close":
                        close = True
                await reader.readexactly(length)
            latencies.append(time.perf_counter() - started)
            seen[head[9:12].decode()] += 1
            if close:
                writer.close()
                writer = None
        except (OSError, asyncio.IncompleteReadError, TimeoutError, ValueError) as exc:
            seen[f"error:{type(exc).__name__}"] += 1
            if writer is not None:
                writer.close()
            writer = None
            await asyncio.sleep(0.01)
    if writer is not None:
        writer.close()


async def drive(url: str, connections: int, seconds: float) -> tuple[list[float], Counter]:
    parts = urlsplit(url)
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    request = f"GET {path} HTTP/1.1\r\nHost: {parts.netloc}\r\n\r\n".encode()
    latencies: list[float] = []
    seen: Counter = Counter()
    stop_at = time.perf_counter() + seconds
    await asyncio.gather(
        *(
            one_connection(parts.hostname, parts.port or 80, request, stop_at, latencies, seen)
            for _ in range(connections)
        )
    )
    return latencies, seen


def run_one(url: str, connections: int, seconds: float) -> dict:
    try:
        import uvloop

        runner = uvloop.run
    except ImportError:
        runner = asyncio.run
    started = time.perf_counter()
    latencies, seen = runner(drive(url, connections, seconds))
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return {
        "latencies_us": [round(x * 1e6) for x in latencies],
        "statuses": dict(seen),
        "wall_s": time.perf_counter() - started,
        "cpu_s": usage.ru_utime + usage.ru_stime,
    }


def percentile(ordered: list[int], q: float) -> float:
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] / 1000 if ordered else 0.0


def summary(parts: list[dict], seconds: float) -> dict:
    ordered = sorted(x for p in parts for x in p["latencies_us"])
    statuses: Counter = Counter()
    for p in parts:
        statuses.update(p["statuses"])
    ok = sum(n for s, n in statuses.items() if s.startswith("2") or s.startswith("3"))
    return {
        "requests": len(ordered),
        "req_s": len(ordered) / seconds,
        "p50_ms": percentile(ordered, 0.50),
        "p90_ms": percentile(ordered, 0.90),
        "p99_ms": percentile(ordered, 0.99),
        "non_2xx": sum(statuses.values()) - ok,
        "statuses": dict(statuses),
        "client_cpu_s": sum(p["cpu_s"] for p in parts),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--processes", type=int, default=1, help="client processes")
    parser.add_argument("--part", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.part:
        json.dump(run_one(args.url, args.connections, args.seconds), sys.stdout)
        return 0
    processes = max(1, min(args.processes, args.connections))
    shares = [
        args.connections // processes + (i < args.connections % processes) for i in range(processes)
    ]
    children = [
        subprocess.Popen(
            [
                sys.executable,
                __file__,
                args.url,
                "--part",
                "--connections",
                str(n),
                "--seconds",
                str(args.seconds),
            ],
            stdout=subprocess.PIPE,
            env={**os.environ, "PYTHONHASHSEED": "0"},
        )
        for n in shares
    ]
    parts = [json.loads(child.communicate()[0]) for child in children]
    json.dump(summary(parts, args.seconds), sys.stdout)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
