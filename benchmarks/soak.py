"""Soak: the service at half its capacity for ten minutes; memory and latency must stay flat.

    python benchmarks/soak.py --minutes 10 --fraction 0.5 --out benchmarks/soak.md

Starts the real service (``python -m app``, the bundled model), measures its capacity
with this script's own client (32 workers, closed loop, 20 s, the same traffic: so the
client's share of the CPU counts against it as it will during the soak), then sends an
open-loop stream at ``--fraction`` of it: requests leave on a fixed schedule whatever
the answers do, so a slowing server shows up as latency, not as fewer requests. The
traffic mixes fresh images (``/random``, 80%) with pinned seeds drawn from a million
(20%, nearly all cache misses, so the in-process cache fills up to its byte bound).
Every ten seconds it records the server's resident memory, the window's latency
percentiles, status codes and the requests still in flight (a growing number means the
server fell behind); the report gives them per minute, the growth from minute 2 to the
end, and a picture (``benchmarks/soak.png``). Not part of CI: it takes the machine for
the whole run.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import math
import os
import random
import shlex
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import suite
from bench_random import counters, cpu_model, free_port, serve
from PIL import Image, ImageDraw
from prometheus_client.parser import text_string_to_metric_families
from report import prepend

from model_store import DEFAULT_ROOT

WINDOW_S = 10


@dataclass
class Window:
    """One sampling window: what was sent, what came back, the server's memory."""

    t: float  # seconds since the soak started, at the window's end
    sent: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    statuses: Counter[str] = field(default_factory=Counter)
    rss_mb: float = 0.0
    load: float = 0.0
    in_flight: int = 0  # requests sent and not yet answered at the window's end
    cache_mb: float = 0.0  # of images in the in-process cache (dne_cache_bytes)

    def percentile(self, q: float) -> float:
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0


def rss_mb(pid: int) -> float:
    return max(suite.rss_mb([pid]), default=0.0)


def cache_bytes(metrics_text: str) -> float:
    for family in text_string_to_metric_families(metrics_text):
        for sample in family.samples:
            if sample.name == "dne_cache_bytes":
                return sample.value
    return 0.0


def pick(rng: random.Random) -> str:
    """The traffic: 80% fresh images, 20% pinned seeds (cache misses, the cache fills)."""
    if rng.random() < 0.8:
        return "/random"
    return f"/models/emoji/1/seed/{rng.randrange(10**6)}"


def client(port: int) -> httpx.AsyncClient:
    limits = httpx.Limits(max_connections=256, max_keepalive_connections=256)
    return httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", limits=limits, timeout=30)


async def capacity(port: int, seconds: float, workers: int = 32) -> float:
    """Answers per second with ``workers`` asking back to back (closed loop)."""
    rng, answered = random.Random(1), 0
    async with client(port) as http:

        async def worker(until: float) -> None:
            nonlocal answered
            while time.perf_counter() < until:
                if (await http.get(pick(rng))).status_code == 200:
                    answered += 1

        await asyncio.gather(*(worker(time.perf_counter() + 5) for _ in range(workers)))
        answered, started = 0, time.perf_counter()  # the first 5 s were warm-up
        await asyncio.gather(*(worker(started + seconds) for _ in range(workers)))
    return answered / seconds


async def soak(port: int, pid: int, rate: float, seconds: float) -> list[Window]:
    """Open loop: request i leaves at start + i / rate, in flight or not. A request counts
    as sent in the window it left in, and as answered in the window its answer came in."""
    windows: list[Window] = []
    now_window = [Window(t=WINDOW_S)]  # the window being filled, shared with the requests
    rng = random.Random(0)
    async with client(port) as http:

        async def one(path: str) -> None:
            started = time.perf_counter()
            try:
                status = str((await http.get(path)).status_code)
            except httpx.HTTPError as exc:
                status = type(exc).__name__
            window = now_window[0]
            window.statuses[status] += 1
            window.latencies_ms.append((time.perf_counter() - started) * 1000)

        tasks: set[asyncio.Task[None]] = set()
        start = time.perf_counter()
        i = 0
        while (elapsed := time.perf_counter() - start) < seconds or tasks:
            current = now_window[0]
            if elapsed >= current.t:
                current.rss_mb, current.load = rss_mb(pid), os.getloadavg()[0]
                current.in_flight = len(tasks)
                current.cache_mb = cache_bytes((await http.get("/metrics")).text) / 2**20
                windows.append(current)
                print(
                    f"  {current.t:4.0f}/{seconds:.0f} s  sent {current.sent}  p50 "
                    f"{current.percentile(0.5):6.1f} ms  p99 {current.percentile(0.99):6.1f} ms"
                    f"  RSS {current.rss_mb:6.1f} MB (cache {current.cache_mb:4.1f})"
                    f"  in flight {current.in_flight}"
                    f"  {dict(current.statuses)}",
                    flush=True,
                )
                now_window[0] = Window(t=current.t + WINDOW_S)
                continue
            if elapsed >= seconds:  # the last answers
                await asyncio.sleep(0.05)
                continue
            due = start + i / rate
            if due > time.perf_counter():
                await asyncio.sleep(min(due - time.perf_counter(), 0.05))
                continue
            task = asyncio.create_task(one(pick(rng)))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            current.sent += 1
            i += 1
        last = now_window[0]
        if last.sent or last.latencies_ms:  # the window the run ended in
            last.rss_mb, last.load = rss_mb(pid), os.getloadavg()[0]
            last.cache_mb = cache_bytes((await http.get("/metrics")).text) / 2**20
            windows.append(last)
    return windows


def by_minute(windows: list[Window]) -> list[Window]:
    per = 60 // WINDOW_S
    minutes = []
    for m in range(len(windows) // per):
        part = windows[m * per : (m + 1) * per]
        last = part[-1]
        merged = Window(t=(m + 1) * 60.0, rss_mb=last.rss_mb, load=last.load)
        merged.in_flight, merged.cache_mb = last.in_flight, last.cache_mb
        for w in part:
            merged.sent += w.sent
            merged.latencies_ms += w.latencies_ms
            merged.statuses.update(w.statuses)
        minutes.append(merged)
    return minutes


def plot(windows: list[Window], out: Path) -> None:
    """Resident memory (blue, linear from 0) and p50/p99 latency (green/red, log scale
    from 1 ms, so steady milliseconds and a spike of seconds both show)."""
    width, height, pad = 900, 360, 50
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    draw.rectangle([pad, pad, width - pad, height - pad], outline="black")
    rss = [w.rss_mb for w in windows]
    series = {
        "RSS MB": ([v / (max(rss) * 1.1) for v in rss], max(rss), (30, 90, 200)),
    }
    top = math.log10(max(max(w.percentile(0.99) for w in windows), 10) * 1.5)
    for name, q, colour in (("p50 ms", 0.5, (20, 150, 60)), ("p99 ms", 0.99, (200, 40, 40))):
        values = [w.percentile(q) for w in windows]
        series[name] = ([math.log10(max(v, 1)) / top for v in values], max(values), colour)
    span_t = windows[-1].t
    for n, (name, (fractions, most, colour)) in enumerate(series.items()):
        points = [
            (pad + w.t / span_t * (width - 2 * pad), height - pad - f * (height - 2 * pad))
            for w, f in zip(windows, fractions, strict=True)
        ]
        draw.line(points, fill=colour, width=2)
        draw.text((pad + 5 + 170 * n, 15), f"{name} (max {most:.0f})", fill=colour)
    draw.text((pad, height - pad + 10), "0 s", fill="black")
    draw.text((width - pad - 40, height - pad + 10), f"{span_t:.0f} s", fill="black")
    draw.text((pad + 5, 30), f"latency: log scale, 1 ms .. {10**top:.0f} ms", fill="black")
    image.save(out)


def report(minutes: list[Window], args: argparse.Namespace, most: float, load_before: float) -> str:
    if not minutes:
        raise SystemExit("no whole minute was measured")
    settle, last = minutes[min(1, len(minutes) - 1)], minutes[-1]
    statuses: Counter[str] = Counter()
    for m in minutes:
        statuses.update(m.statuses)
    growth = last.rss_mb - settle.rss_mb
    rows = [
        f"| {m.t / 60:.0f} | {m.sent / 60:.0f} | {m.percentile(0.5):.1f} | "
        f"{m.percentile(0.99):.1f} | {max(m.latencies_ms, default=0):.0f} | "
        f"{m.in_flight} | {m.rss_mb:.0f} | {m.cache_mb:.1f} | {m.load:.2f} |"
        for m in minutes
    ]
    return "\n".join(
        [
            f"### {dt.datetime.now():%Y-%m-%d %H:%M}: {os.cpu_count()} CPUs, {cpu_model()}",
            "",
            f"Command: `python {shlex.join(sys.argv)}`  ",
            f"Capacity (this client, 32 workers back to back, 20 s): {most:.0f} req/s; soak "
            f"at {args.fraction:.0%} of it: {most * args.fraction:.0f} req/s for "
            f"{args.minutes} min (80% `/random`, 20% pinned seeds, open loop); "
            f"cache bound {args.cache_mb} MiB.  ",
            f"Load average (1 min) before: {load_before:.2f}"
            + (f"  \n{args.note}" if args.note else ""),
            "",
            "| minute | req/s sent | p50 ms | p99 ms | max ms | in flight | server RSS MB "
            "| of it cache MB | load |",
            "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
            *rows,
            "",
            f"Answers: {dict(sorted(statuses.items()))}.  ",
            f"Server memory from the end of minute 2 to the end: {settle.rss_mb:.0f} → "
            f"{last.rss_mb:.0f} MB ({growth:+.0f} MB, of which the cache "
            f"{last.cache_mb - settle.cache_mb:+.0f} MB); p99 {settle.percentile(0.99):.1f} → "
            f"{last.percentile(0.99):.1f} ms.",
            "",
        ]
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", type=Path, default=DEFAULT_ROOT, help="model store folder")
    parser.add_argument("--minutes", type=int, default=10, help="length of the soak")
    parser.add_argument("--fraction", type=float, default=0.5, help="of measured capacity")
    parser.add_argument("--cache-mb", type=int, default=64, help="DNE_CACHE_MAX_BYTES in MiB")
    parser.add_argument("--out", type=Path, help="Markdown file to add the results to")
    parser.add_argument("--picture", type=Path, help="PNG of memory and latency over time")
    parser.add_argument("--note", help="a line for the results: what else ran, and so on")
    args = parser.parse_args()
    load_before = os.getloadavg()[0]
    port = free_port()
    print("starting the service ...", flush=True)
    cache = str(args.cache_mb * 2**20)
    process = serve(port, args.store, {"DNE_ACCESS_LOG": "false", "DNE_CACHE_MAX_BYTES": cache})
    try:
        print("measuring capacity (25 s) ...", flush=True)
        most = asyncio.run(capacity(port, 20))
        rate = most * args.fraction
        print(f"capacity {most:.0f} req/s; soaking at {rate:.0f} req/s", flush=True)
        windows = asyncio.run(soak(port, process.pid, rate, args.minutes * 60))
        images = counters(port)["dne_images_generated_total"]
    finally:
        process.terminate()
        process.wait()
    section = report(by_minute(windows), args, most, load_before)
    section += f"Images painted by the server in all: {images:.0f}.\n"
    print("\n" + section)
    if args.picture:
        plot(windows, args.picture)
        section += f"\n![memory and latency over time]({args.picture.name})\n"
    if args.out:
        prepend(args.out, section, "# Soak: half capacity for ten minutes\n\n")
        print(f"written to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
