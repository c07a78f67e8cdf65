"""The second multi-process design for issue 9, built just far enough to measure it.

Design A (what ships, ``DNE_WORKERS``): N whole services on one socket, each with its own
model, batcher and PNG threads. Design B (Triton's shape): N HTTP front-end processes
that draw the seed, hand it to **one** painter process over a Unix socket and encode the
PNG themselves; the painter owns the model and batches across every front end, so the
batches are N times fuller and the model is loaded once.

    python benchmarks/frontends.py --out benchmarks/frontends --workers 1,2

Both serve fresh ``GET /random`` at the service's defaults (the same model, precision and
PNG level, h11, no pool: ``DNE_RANDOM_POOL=0``), measured side by side with the suite's
load client (benchmarks/suite.py). Not a product: no cache, no metrics, no errors beyond
what a benchmark needs.

Painter protocol, per front-end connection: request = id (u32) + seed (u64); answer = id
(u32) + length (u32) + the image's raw [H, W, C] uint8 pixels.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import shlex
import struct
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fastapi import FastAPI

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:0] = [str(ROOT), str(HERE)]

REQUEST = struct.Struct("<IQ")
ANSWER = struct.Struct("<II")
HEADING = "# Several processes per host: two designs measured side by side\n\n"
SOCKET = os.environ.get("DNE_PAINTER_SOCKET", "")
SHAPE = tuple(int(n) for n in os.environ.get("DNE_PAINTER_SHAPE", "0,0,0").split(","))


# --- the painter: one process, the model, one batcher for every front end ----------------


async def painter() -> None:
    from baselines import default_generator, seed_rows

    from app.batcher import Batcher
    from app.settings import get_settings
    from model_store.paint import paint

    settings = get_settings()
    generator, m, dtype = default_generator(settings)

    def run(seeds: list[int]) -> list[bytes]:
        z, labels = seed_rows(m, seeds)
        n = len(seeds)
        rows = paint(generator, m, z, labels, [1.0] * n, [m.resolution] * n, dtype)
        return [row.tobytes() for row in rows]

    run([0])  # warm-up
    batcher: Batcher[int, bytes] = Batcher(
        run, settings.max_batch_size, settings.max_delay_ms, settings.queue_size
    )
    await batcher.start()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        async def answer(request_id: int, seed: int) -> None:
            data = await batcher.submit(seed)
            writer.write(ANSWER.pack(request_id, len(data)) + data)

        tasks: set[asyncio.Task[None]] = set()
        while True:
            try:
                head = await reader.readexactly(REQUEST.size)
            except asyncio.IncompleteReadError:
                return  # the front end went away
            task = asyncio.create_task(answer(*REQUEST.unpack(head)))
            tasks.add(task)
            task.add_done_callback(tasks.discard)

    server = await asyncio.start_unix_server(serve, SOCKET)
    channels = 4 if m.channels == 4 else m.channels  # what paint returns per row
    print(f"ready {m.resolution},{m.resolution},{channels}", flush=True)
    async with server:
        await server.serve_forever()


# --- a front end: HTTP, the seed, the PNG -----------------------------------------------


class PainterClient:
    """One connection per front-end process; answers matched to requests by id."""

    def __init__(self) -> None:
        self.waiting: dict[int, asyncio.Future[bytes]] = {}
        self.next_id = 0

    async def connect(self) -> None:
        self.reader, self.writer = await asyncio.open_unix_connection(SOCKET)
        self.listener = asyncio.create_task(self.listen())

    async def listen(self) -> None:
        while True:
            request_id, length = ANSWER.unpack(await self.reader.readexactly(ANSWER.size))
            self.waiting.pop(request_id).set_result(await self.reader.readexactly(length))

    async def paint(self, seed: int) -> bytes:
        self.next_id = (self.next_id + 1) % 2**32
        future = self.waiting[self.next_id] = asyncio.get_running_loop().create_future()
        self.writer.write(REQUEST.pack(self.next_id, seed))
        return await future


def frontend_app() -> FastAPI:
    """The front ends' app (imported only in front-end processes)."""
    import secrets

    import numpy as np
    from fastapi import FastAPI, Response

    from app.settings import get_settings
    from model_store.images import encode_png

    level = get_settings().png_compress_level
    client = PainterClient()

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await client.connect()
        yield

    app = FastAPI(lifespan=lifespan)

    @app.get("/random")
    async def random_image() -> Response:
        seed = secrets.randbelow(2**53)
        raw = await client.paint(seed)
        pixels = np.frombuffer(raw, np.uint8).reshape(SHAPE)
        data = await asyncio.to_thread(encode_png, pixels, level)
        return Response(data, media_type="image/png", headers={"X-Seed": str(seed)})

    @app.get("/readyz")
    async def ready() -> dict[str, bool]:
        return {"ready": True}

    return app


if os.environ.get("DNE_FRONTEND") == "1":
    app = frontend_app()


# --- the measurement --------------------------------------------------------------------


class DesignB:
    """The painter, then N uvicorn front-end workers on one port."""

    def __init__(self, workers: int, threads: int, tmp: Path) -> None:
        import subprocess

        from suite import Server

        sock = str(tmp / f"painter-{workers}.sock")
        env = {**os.environ, "PYTHONPATH": str(ROOT), "DNE_PAINTER_SOCKET": sock,
               "DNE_THREADS": str(threads)}  # fmt: skip
        self.painter = subprocess.Popen(
            [sys.executable, str(HERE / "frontends.py"), "--painter"],
            env=env, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        line = self.painter.stdout.readline()
        if not line.startswith("ready "):
            raise SystemExit(f"the painter did not start: {line!r}")
        front = {"DNE_PAINTER_SOCKET": sock, "DNE_PAINTER_SHAPE": line.split()[1],
                 "DNE_FRONTEND": "1", "DNE_THREADS": "1"}  # fmt: skip
        command = [sys.executable, "-m", "uvicorn", "frontends:app", "--port", "{port}",
                   "--workers", str(workers), "--log-level", "warning",
                   "--no-access-log"]  # fmt: skip
        self.server = Server(f"B: {workers} front ends + 1 painter", command, front, "/readyz")
        self.server.also = [self.painter.pid]

    def stop(self) -> None:
        self.server.stop()
        self.painter.terminate()
        self.painter.wait(30)


def main() -> int:
    import tempfile

    from report import record
    from suite import Server, machine, measure

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--painter", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help="writes OUT.md and OUT.json")
    parser.add_argument("--workers", default="1,2", help="front ends (B) and workers (A)")
    parser.add_argument("--concurrency", default="32,256")
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--warmup", type=float, default=2)
    parser.add_argument("--client", choices=["wrk", "python"], default=None)
    args = parser.parse_args()
    if args.painter:
        asyncio.run(painter())
        return 0
    import shutil

    args.client = args.client or ("wrk" if shutil.which("wrk") else "python")
    cores = os.cpu_count() or 1
    load_before = os.getloadavg()[0]
    points = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in [int(w) for w in args.workers.split(",")]:
            threads = max(1, cores // n)
            env = {"PYTHONPATH": str(ROOT), "DNE_WORKERS": str(n), "DNE_RANDOM_POOL": "0",
                   "DNE_THREADS": str(threads)}  # fmt: skip
            a = Server(f"A: {n} whole services",
                       [sys.executable, "-m", "app", "--port", "{port}", "--log-level",
                        "warning"], env, "/readyz")  # fmt: skip
            b = None
            try:
                for c in map(int, args.concurrency.split(",")):
                    points.append({**measure(a, "/random", c, args), "design": "A", "n": n})
                    print(f"  {a.name} c={c}: {points[-1]['req_s']:.0f} req/s", flush=True)
            finally:
                a.stop()
            try:
                b = DesignB(n, cores, Path(tmp))
                for c in map(int, args.concurrency.split(",")):
                    point = measure(b.server, "/random", c, args)
                    points.append({**point, "design": "B", "n": n})
                    print(f"  {b.server.name} c={c}: {point['req_s']:.0f} req/s", flush=True)
            finally:
                if b is not None:
                    b.stop()
    run = {
        "date": f"{dt.datetime.now():%Y-%m-%d %H:%M}",
        "command": f"python {shlex.join(sys.argv)}",
        "machine": machine(),
        "client": args.client,
        "seconds": args.seconds,
        "points": points,
        "load_before": load_before,
        "load_after": os.getloadavg()[0],
    }
    section = report(run)
    print("\n" + section)
    if args.out:
        record(args.out, run, section, HEADING)
    return 0


def report(run: dict) -> str:
    m = run["machine"]
    lines = [
        f"### {run['date']}: {m['cores']} CPUs ({m['cpu']}), GPU: {m['gpu'] or 'none'}",
        "",
        f"Command: `{run['command']}`  ",
        f"Commit {m['commit'][:12]}; torch {m['torch']}; client: {run['client']}; "
        f"{run['seconds']:g} s per point.  ",
        f"Load average (1 min) before: {run['load_before']:.2f}, after: {run['load_after']:.2f}",
        "",
        "| design | processes | connections | req/s | p50 / p99 ms | CPU cores | RSS all MB "
        "| GPU MB |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for p in run["points"]:
        gpu = f"{p['gpu_mb']:.0f}" if p["gpu_mb"] is not None else "-"
        lines.append(
            f"| {p['server']} | {p['processes']} | {p['connections']} | {p['req_s']:.0f} | "
            f"{p['p50_ms']:.1f} / {p['p99_ms']:.1f} | {p['server_cpu_cores']:.2f} | "
            f"{p['rss_total_mb']:.0f} | {gpu} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
