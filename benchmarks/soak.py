"""Soak: the service at half its capacity for ten minutes; memory and latency must stay flat.

    python benchmarks/soak.py --minutes 10 --fraction 0.5 --out benchmarks/soak.md

Starts the real service (``python -m app``, the bundled model), measures its capacity on
``GET /random`` with wrk (32 connections, 20 s), then sends an open-loop stream at
``--fraction`` of it: requests leave on a fixed schedule whatever the answers do, so a
slowing server shows up as latency, not as fewer requests. The stream mixes fresh images
(``/random``, 80%) with pinned seeds drawn from a million (20%, nearly all cache misses,
so the in-process cache fills up to its byte bound). Every ten seconds it records the
server's resident memory, the window's latency percentiles and status codes; the report
gives them per minute, the growth from minute 2 to the end, and a picture
(``benchmarks/soak.png``). Not part of CI: it takes the machine for the whole run.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import random
import re
import shlex
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from bench_random import counters, cpu_model, drive, free_port, serve, write
from PIL import Image, ImageDraw

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

    def percentile(self, q: float) -> float:
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def soak(port: int, pid: int, rate: float, seconds: float) -> list[Window]:
    """Open loop: request i leaves at start + i / rate, in flight or not. A request counts
    as sent in the window it left in, and as answered in the window its answer came in."""
    windows: list[Window] = []
    now_window = [Window(t=WINDOW_S)]  # the window being filled, shared with the requests
    rng = random.Random(0)
    limits = httpx.Limits(max_connections=256, max_keepalive_connections=256)
    async with httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{port}", limits=limits, timeout=30
    ) as client:

        async def one(path: str) -> None:
            started = time.perf_counter()
            try:
                status = str((await client.get(path)).status_code)
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
                windows.append(current)
                print(
                    f"  {current.t:4.0f}/{seconds:.0f} s  sent {current.sent}  p50 "
                    f"{current.percentile(0.5):6.1f} ms  p99 {current.percentile(0.99):6.1f} ms"
                    f"  RSS {current.rss_mb:6.1f} MB  {dict(current.statuses)}",
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
            if rng.random() < 0.8:
                path = "/random"
            else:
                path = f"/models/emoji/1/seed/{rng.randrange(10**6)}"
            task = asyncio.create_task(one(path))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            current.sent += 1
            i += 1
    return windows


def by_minute(windows: list[Window]) -> list[Window]:
    per = 60 // WINDOW_S
    minutes = []
    for m in range(len(windows) // per):
        part = windows[m * per : (m + 1) * per]
        merged = Window(t=(m + 1) * 60.0, rss_mb=part[-1].rss_mb, load=part[-1].load)
        for w in part:
            merged.sent += w.sent
            merged.latencies_ms += w.latencies_ms
            merged.statuses.update(w.statuses)
        minutes.append(merged)
    return minutes


def plot(windows: list[Window], out: Path) -> None:
    """Resident memory (blue) and p50/p99 latency (green/red) over time, each scaled to
    its own maximum; axes labelled in the corners."""
    width, height, pad = 900, 360, 50
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    draw.rectangle([pad, pad, width - pad, height - pad], outline="black")
    series = {
        "RSS MB": ([w.rss_mb for w in windows], (30, 90, 200)),
        "p50 ms": ([w.percentile(0.5) for w in windows], (20, 150, 60)),
        "p99 ms": ([w.percentile(0.99) for w in windows], (200, 40, 40)),
    }
    span_t = windows[-1].t
    for n, (name, (values, colour)) in enumerate(series.items()):
        top = max(values) * 1.1 or 1
        points = [
            (
                pad + (w.t / span_t) * (width - 2 * pad),
                height - pad - v / top * (height - 2 * pad),
            )
            for w, v in zip(windows, values, strict=True)
        ]
        draw.line(points, fill=colour, width=2)
        draw.text((pad + 5 + 150 * n, 15), f"{name} (max {max(values):.0f})", fill=colour)
    draw.text((pad, height - pad + 10), "0 s", fill="black")
    draw.text((width - pad - 40, height - pad + 10), f"{span_t:.0f} s", fill="black")
    image.save(out)


def report(
    minutes: list[Window], args: argparse.Namespace, capacity: float, load_before: float
) -> str:
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
        f"{m.rss_mb:.0f} | {m.load:.2f} |"
        for m in minutes
    ]
    return "\n".join(
        [
            f"### {dt.datetime.now():%Y-%m-%d %H:%M}: {os.cpu_count()} CPUs, {cpu_model()}",
            "",
            f"Command: `python {shlex.join(sys.argv)}`  ",
            f"Capacity (wrk, `GET /random`, 32 connections, 20 s): {capacity:.0f} req/s; soak "
            f"at {args.fraction:.0%} of it: {capacity * args.fraction:.0f} req/s for "
            f"{args.minutes} min (80% `/random`, 20% pinned seeds, open loop).  ",
            f"Load average (1 min) before: {load_before:.2f}"
            + (f"  \n{args.note}" if args.note else ""),
            "",
            "| minute | req/s sent | p50 ms | p99 ms | max ms | server RSS MB | load |",
            "|---:|---:|---:|---:|---:|---:|---:|",
            *rows,
            "",
            f"Answers: {dict(sorted(statuses.items()))}.  ",
            f"Server memory from the end of minute 2 to the end: {settle.rss_mb:.0f} → "
            f"{last.rss_mb:.0f} MB ({growth:+.0f} MB); p99 {settle.percentile(0.99):.1f} → "
            f"{last.percentile(0.99):.1f} ms.",
            "",
        ]
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", type=Path, default=DEFAULT_ROOT, help="model store folder")
    parser.add_argument("--minutes", type=int, default=10, help="length of the soak")
    parser.add_argument("--fraction", type=float, default=0.5, help="of measured capacity")
    parser.add_argument("--out", type=Path, help="Markdown file to add the results to")
    parser.add_argument("--picture", type=Path, help="PNG of memory and latency over time")
    parser.add_argument("--note", help="a line for the results: what else ran, and so on")
    args = parser.parse_args()
    load_before = os.getloadavg()[0]
    port = free_port()
    print("starting the service ...", flush=True)
    process = serve(port, args.store, {"DNE_ACCESS_LOG": "false"})
    try:
        drive(port, 32, 3, "warm-up")
        wrk_report = drive(port, 32, 20, "capacity")
        capacity = float(re.search(r"Requests/sec:\s+([\d.]+)", wrk_report).group(1))
        rate = capacity * args.fraction
        print(f"capacity {capacity:.0f} req/s; soaking at {rate:.0f} req/s", flush=True)
        windows = asyncio.run(soak(port, process.pid, rate, args.minutes * 60))
        images = counters(port)["dne_images_generated_total"]
    finally:
        process.terminate()
        process.wait()
    section = report(by_minute(windows), args, capacity, load_before)
    section += f"Images painted by the server in all: {images:.0f}.\n"
    print("\n" + section)
    if args.picture:
        plot(windows, args.picture)
        section += f"\n![memory and latency over time]({args.picture.name})\n"
    if args.out:
        write(args.out, section, "# Soak: half capacity for ten minutes\n\n")
        print(f"written to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
