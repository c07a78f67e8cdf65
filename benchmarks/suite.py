"""The serving suite: the service against a naive server and a static-bytes ceiling, the raw
generator and PNG encoding, on whatever host it runs on. One command, one table:

    python benchmarks/suite.py --out benchmarks/serving

writes ``benchmarks/serving.md`` (newest run first) and ``benchmarks/serving.json`` (every
run, newest last: machine, cores, GPU, commit, command, every figure).

What it does, in order, all in one invocation so ratios are side by side:

1. The raw generator (the service's device and precision, and bf16 for reference): img/s
   per batch size, forward pass and uint8 pixels back on the CPU; the best batch.
2. PNG encoding of real model output, one core: Pillow at several levels and whichever
   other encoders are installed (imagecodecs, fpng, OpenCV): ms per image and bytes.
3. ``python -m app`` with its defaults (start-up to ``/readyz`` timed): fresh
   ``GET /random`` and a cached pinned seed at each concurrency.
4. The naive per-request server on fresh images, and the static-bytes ceiling on the
   cached path (benchmarks/baselines.py), with the service's server settings (HTTP
   parser, process count, torch threads).

Load comes from a separate process: wrk where it is installed (one thread per 64
connections), else benchmarks/loadgen.py. Each point: req/s, p50/p90/p99, mean batch (the
service's /metrics), the server's CPU use in cores, its resident memory (largest process
and all together) and GPU memory (nvidia-smi, where there is one). The client shares the
host's cores; on a small machine other work does too: the load average is recorded.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

from baselines import default_generator, seed_rows  # noqa: E402
from bench_random import cpu_model, free_port, milliseconds  # noqa: E402
from report import record  # noqa: E402

from app.settings import Settings  # noqa: E402
from app.workers import worker_count  # noqa: E402

HEADING = "# Serving: the service against a naive server and the static ceiling\n\n"
NO_POOL = "service (pool off)"  # the service with DNE_RANDOM_POOL=0
TICKS = os.sysconf("SC_CLK_TCK")


# --- processes --------------------------------------------------------------------------


def tree(pid: int) -> list[int]:
    """``pid`` and its descendants."""
    found, stack = [], [pid]
    while stack:
        p = stack.pop()
        found.append(p)
        try:
            for task in Path(f"/proc/{p}/task").iterdir():
                stack.extend(int(c) for c in (task / "children").read_text().split())
        except OSError:
            continue
    return found


def cpu_seconds(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime
        except OSError:
            continue
    return total / TICKS


def rss_mb(pids: list[int]) -> list[float]:
    sizes = []
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    sizes.append(int(line.split()[1]) / 1024)
        except OSError:
            continue
    return sizes


def gpu_mb(pids: list[int]) -> float | None:
    if shutil.which("nvidia-smi") is None:
        return None
    out = subprocess.run(
        ["nvidia-smi", "--query-compute-apps=pid,used_memory", "--format=csv,noheader,nounits"],
        capture_output=True,
        text=True,
    ).stdout
    used = {int(p): float(m) for p, m in (line.split(",") for line in out.splitlines() if line)}
    return sum(used.get(pid, 0.0) for pid in pids)


class Server:
    """A server process on a free port, ready when ``ready_path`` answers 200."""

    def __init__(self, name: str, command: list[str], env: dict[str, str], ready_path: str):
        self.name, self.port = name, free_port()
        self.also: list[int] = []  # other processes serving with it (their CPU and RSS count)
        command = [part.replace("{port}", str(self.port)) for part in command]
        started = time.perf_counter()
        self.process = subprocess.Popen(
            command,
            env={**os.environ, **env},
            cwd=HERE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        deadline = time.monotonic() + 300
        while True:
            try:
                if httpx.get(self.url + ready_path, timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise SystemExit(f"{name} did not start:\n{self.process.stderr.read()[-3000:]}")
            time.sleep(0.05)
        self.start_s = time.perf_counter() - started

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def pids(self) -> list[int]:
        """Its processes, and those of any helper it relies on (``also``)."""
        return [p for root in (self.process.pid, *self.also) for p in tree(root)]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
        try:
            self.process.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.communicate()


# --- load -------------------------------------------------------------------------------


def wrk(url: str, connections: int, seconds: float) -> dict:
    threads = max(1, min(connections // 64 + 1, os.cpu_count() or 1, connections))
    command = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds:g}s", "--latency"]
    started = time.perf_counter()
    done = subprocess.run(
        [*command, "--timeout", "10s", url], capture_output=True, text=True, check=False
    )
    out = done.stdout
    if done.returncode:
        raise SystemExit(f"wrk failed: {done.stderr}")
    latency = dict(re.findall(r"^\s+(50|90|99)%\s+(\S+)\s*$", out, re.M))  # "1.20s " is padded
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    return {
        "requests": int(re.search(r"(\d+) requests in", out).group(1)),
        "req_s": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
        "p50_ms": milliseconds(latency["50"]),
        "p90_ms": milliseconds(latency["90"]),
        "p99_ms": milliseconds(latency["99"]),
        "non_2xx": (int(non_2xx.group(1)) if non_2xx else 0)
        + (sum(int(x) for x in errors.groups()) if errors else 0),
        "client_cpu_s": None,
        "client_wall_s": time.perf_counter() - started,
    }


def python_client(url: str, connections: int, seconds: float) -> dict:
    processes = max(1, min((os.cpu_count() or 1) // 4, connections // 32 + 1))
    out = subprocess.run(
        [sys.executable, str(HERE / "loadgen.py"), url, "--connections", str(connections),
         "--seconds", str(seconds), "--processes", str(processes)],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    return json.loads(out)


def counters(server: Server) -> dict[str, float]:
    """The service's batch sizes and /random pool answers so far (from /metrics)."""
    out = {"rows": 0.0, "batches": 0.0, "pool_hit": 0.0}
    for family in text_string_to_metric_families(httpx.get(server.url + "/metrics").text):
        for sample in family.samples:
            if sample.name == "dne_batch_size_sum":
                out["rows"] += sample.value
            elif sample.name == "dne_batch_size_count":
                out["batches"] += sample.value
            elif sample.name == "dne_random_pool_total" and sample.labels["result"] == "hit":
                out["pool_hit"] += sample.value
    return out


def measure(server: Server, path: str, connections: int, args: argparse.Namespace) -> dict:
    load = wrk if args.client == "wrk" else python_client
    load(server.url + path, connections, args.warmup)  # allocator, pools, branch caches
    pids = server.pids()
    service = server.name.startswith("service")
    before = counters(server) if service else None
    before_cpu, started = cpu_seconds(pids), time.perf_counter()
    result = load(server.url + path, connections, args.seconds)
    wall = time.perf_counter() - started
    pids = server.pids()
    sizes = rss_mb(pids)
    after = counters(server) if service else None
    delta = {k: after[k] - before[k] for k in after} if after and before else {}
    count = delta.get("batches", 0.0)
    return {
        **result,
        "server": server.name,
        "path": path,
        "connections": connections,
        "mean_batch": delta["rows"] / count if count else None,
        # Answers from images painted ahead (app/pool.py), of the requests wrk counted.
        "pool_hit_share": delta["pool_hit"] / result["requests"] if delta else None,
        "server_cpu_cores": (cpu_seconds(pids) - before_cpu) / wall,
        "rss_max_mb": max(sizes, default=0.0),
        "rss_total_mb": sum(sizes),
        "processes": len(sizes),
        "gpu_mb": gpu_mb(pids),
        "load_1min": os.getloadavg()[0],
    }


# --- in-process figures -----------------------------------------------------------------


def generator_rates(
    settings: Settings, seconds: float, batch_sizes: list[int]
) -> tuple[dict, list]:
    """img/s per precision and batch size; and 64 images of real output for the PNG rows."""
    from model_store import autocast_dtype, precision_name
    from model_store.paint import paint

    generator, m, served_dtype = default_generator(settings)
    device = next(generator.parameters()).device
    results: dict[str, dict[int, float]] = {}
    precisions = [settings.amp] if settings.amp == "bf16" else [settings.amp, "bf16"]
    for amp in precisions:
        dtype = autocast_dtype(amp, device)
        name = precision_name(dtype)
        results[name] = {}
        for n in batch_sizes:
            z, labels = seed_rows(m, range(n))
            rows = (generator, m, z, labels, [1.0] * n, [m.resolution] * n, dtype)
            paint(*rows)  # warm: first calls set kernels up
            images, started = 0, time.perf_counter()
            while time.perf_counter() - started < seconds:
                paint(*rows)
                images += n
            results[name][n] = images / (time.perf_counter() - started)
    z, labels = seed_rows(m, range(64))
    pixels = paint(generator, m, z, labels, [1.0] * 64, [m.resolution] * 64, served_dtype)
    described = f"{m.ref} ({m.architecture}, {m.resolution}px)"
    return {"img_s": results, "model": described, "version": m.version}, pixels


def png_encoders(pixels: list, seconds: float) -> list[dict]:
    """ms per image on one core and mean bytes, over real model output."""
    import io

    import numpy as np
    from PIL import Image

    def pillow(level: int):
        def encode(p):
            out = io.BytesIO()
            Image.fromarray(p).save(out, "PNG", compress_level=level)
            return out.getvalue()

        return encode

    encoders = {f"Pillow level {level}": pillow(level) for level in (0, 1, 6, 9)}
    try:
        import imagecodecs

        encoders["imagecodecs png level 1"] = lambda p: imagecodecs.png_encode(p, level=1)
    except ImportError:
        pass
    try:
        import fpng  # type: ignore[import-not-found]

        encoders["fpng"] = lambda p: fpng.from_ndarray(p)
    except ImportError:
        pass
    try:
        import cv2  # type: ignore[import-not-found]

        def opencv(p):
            bgra = cv2.cvtColor(p, cv2.COLOR_RGBA2BGRA) if p.shape[2] == 4 else p
            return cv2.imencode(".png", bgra, [cv2.IMWRITE_PNG_COMPRESSION, 1])[1].tobytes()

        encoders["OpenCV level 1"] = opencv
    except ImportError:
        pass
    rows = []
    for name, encode in encoders.items():
        try:
            encoded = [encode(p) for p in pixels]
        except Exception as exc:  # an encoder that cannot take RGBA: say so, go on
            rows.append({"encoder": name, "error": f"{type(exc).__name__}: {exc}"[:120]})
            continue
        sizes = [len(e) for e in encoded]
        exact = all(
            np.array_equal(np.asarray(Image.open(io.BytesIO(e)).convert(mode)), p)
            for e, p in zip(encoded, pixels, strict=True)
            for mode in ["RGBA" if p.shape[2] == 4 else "RGB" if p.shape[2] == 3 else "L"]
        )
        count, started = 0, time.perf_counter()
        while time.perf_counter() - started < seconds:
            for p in pixels:
                encode(p)
            count += len(pixels)
        ms = (time.perf_counter() - started) / count * 1000
        rows.append({"encoder": name, "ms": ms, "per_core_s": 1000 / ms,
                     "bytes": sum(sizes) / len(sizes), "exact": exact})  # fmt: skip
    return rows


# --- the report -------------------------------------------------------------------------


def machine() -> dict:
    cpu = cpu_model()
    gpu = None
    try:
        import torch

        if torch.cuda.is_available():
            gpu = torch.cuda.get_device_name(0)
        torch_version = torch.__version__
    except ImportError:
        torch_version = None
    commit = os.environ.get("DNE_COMMIT")
    if not commit:
        done = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True
        )
        commit = done.stdout.strip() or "unknown"
    return {"cpu": cpu, "cores": os.cpu_count(), "gpu": gpu, "torch": torch_version,
            "python": platform.python_version(), "commit": commit}  # fmt: skip


def table(points: list[dict], server: str, path: str, baseline: str, label: str) -> list[str]:
    ours = {p["connections"]: p for p in points if p["server"] == server and p["path"] == path}
    base = {p["connections"]: p for p in points if p["server"] == baseline}
    lines = [
        f"| {label}: connections | service req/s | {baseline} req/s | ratio | p50 / p90 / p99 ms "
        f"| {baseline} p50 / p99 ms | mean batch | pool hits | CPU cores | RSS max / all MB "
        "| GPU MB |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for c, p in sorted(ours.items()):
        b = base.get(c, {})
        ratio = p["req_s"] / b["req_s"] if b.get("req_s") else float("nan")
        batch = f"{p['mean_batch']:.1f}" if p["mean_batch"] else "-"
        gpu = f"{p['gpu_mb']:.0f}" if p["gpu_mb"] is not None else "-"
        hits = p.get("pool_hit_share")
        pool = f"{min(hits, 1.0):.0%}" if hits else "-"
        lines.append(
            f"| {c} | {p['req_s']:.0f} | {b.get('req_s', 0):.0f} | {ratio:.2f}x | "
            f"{p['p50_ms']:.1f} / {p['p90_ms']:.1f} / {p['p99_ms']:.1f} | "
            f"{b.get('p50_ms', 0):.1f} / {b.get('p99_ms', 0):.1f} | {batch} | {pool} | "
            f"{p['server_cpu_cores']:.2f} | {p['rss_max_mb']:.0f} / {p['rss_total_mb']:.0f} | "
            f"{gpu} |"
        )
    errors = sum(p["non_2xx"] for p in points if p["server"] in (server, baseline))
    lines.append(f"\nNon-2xx answers or socket errors in these rows: {errors}.")
    return lines


def report(run: dict) -> str:
    m, s = run["machine"], run["settings"]
    gen = run["generator"]
    lines = [
        f"### {run['date']}: {m['cores']} CPUs ({m['cpu']}), GPU: {m['gpu'] or 'none'}",
        "",
        f"Command: `{run['command']}`  ",
        f"Commit {m['commit'][:12]}; torch {m['torch']}, Python {m['python']}; model "
        f"{gen['model']}; client: {run['client']}; {run['seconds']:g} s per point after "
        f"{run['warmup']:g} s of warm-up.  ",
        f"Service settings: {s}.  ",
        f"Start-up to /readyz: service {run['start_s']['service']:.1f} s, naive "
        f"{run['start_s']['naive']:.1f} s, static {run['start_s']['static']:.1f} s.  ",
        f"Load average (1 min) before: {run['load_before']:.2f}, after: {run['load_after']:.2f}"
        + (f"  \n{run['note']}" if run.get("note") else ""),
        "",
        *table(run["points"], "service", "/random", "naive", "fresh `/random`"),
        "",
        *table(run["points"], NO_POOL, "/random", "naive", "fresh `/random`, pool off"),
        "",
        *table(run["points"], "service", run["cached_path"], "static", "cached seed"),
        "",
        "| raw generator, batch | " + " | ".join(f"{p} img/s" for p in gen["img_s"]) + " |",
        "|---:|" + "---:|" * len(gen["img_s"]),
    ]
    sizes = sorted({n for rates in gen["img_s"].values() for n in rates})
    for n in sizes:
        cells = " | ".join(f"{rates.get(n, 0):.0f}" for rates in gen["img_s"].values())
        lines.append(f"| {n} | {cells} |")
    lines += ["", "| PNG encoder (one core, real output) | ms / image | images/s | bytes "
              "| decodes to the same pixels |", "|---|---:|---:|---:|---|"]  # fmt: skip
    for row in run["png"]:
        if "error" in row:
            lines.append(f"| {row['encoder']} | {row['error']} | | | |")
        else:
            lines.append(
                f"| {row['encoder']} | {row['ms']:.3f} | {row['per_core_s']:.0f} | "
                f"{row['bytes']:.0f} | {'yes' if row['exact'] else 'no'} |"
            )
    sweep = [p for p in run["points"] if p["server"].startswith("service, ")]
    if sweep:
        lines += [
            "",
            "| fresh `/random`, workers | connections | req/s | p50 / p99 ms | mean batch "
            "| CPU cores | start-up s | RSS all MB | GPU MB |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for p in sweep:
            gpu = f"{p['gpu_mb']:.0f}" if p["gpu_mb"] is not None else "-"
            batch = f"{p['mean_batch']:.1f}" if p["mean_batch"] else "-"
            lines.append(
                f"| {p['server']} | {p['connections']} | {p['req_s']:.0f} | {p['p50_ms']:.1f} / "
                f"{p['p99_ms']:.1f} | {batch} | {p['server_cpu_cores']:.2f} | "
                f"{p['start_s']:.1f} | {p['rss_total_mb']:.0f} | {gpu} |"
            )
    lines += ["", *(f"- {line}" for line in run["targets"]), ""]
    return "\n".join(lines)


def targets(run: dict) -> list[str]:
    points, out = run["points"], []

    def at(server: str, c: int, path: str | None = None) -> dict | None:
        return next(
            (p for p in points if p["server"] == server and p["connections"] == c
             and (path is None or p["path"] == path)), None,
        )  # fmt: skip

    fresh, naive = at("service", 32, "/random"), at("naive", 32)
    if fresh and naive:
        ratio = fresh["req_s"] / naive["req_s"]
        out.append(f"fresh /random at 32 connections: {ratio:.2f}x the naive server (target 4x)")
    plain = at(NO_POOL, 32)
    if plain and naive:
        ratio = plain["req_s"] / naive["req_s"]
        out.append(f"the same with the pool off: {ratio:.2f}x the naive server")
    cached, ceiling = at("service", 32, run["cached_path"]), at("static", 32)
    if cached and ceiling:
        share = cached["req_s"] / ceiling["req_s"]
        out.append(f"cached seed at 32 connections: {share:.0%} of the static ceiling (target 70%)")
    one = at("service", 1, "/random")
    gen = run["generator"]["img_s"]
    first = next(iter(gen.values()))
    png = next((r for r in run["png"] if r["encoder"] == "Pillow level 1"), None)
    if one and 1 in first and png:
        floor = 1000 / first[1] + png["ms"]
        out.append(
            f"p50 at concurrency 1: {one['p50_ms']:.1f} ms = {one['p50_ms'] / floor:.1f}x one "
            f"generate + encode ({floor:.1f} ms; target at most 2x)"
        )
        plain_one = at(NO_POOL, 1)
        if plain_one:
            out.append(
                f"the same with the pool off: {plain_one['p50_ms']:.1f} ms = "
                f"{plain_one['p50_ms'] / floor:.1f}x"
            )
    top = at("service", 256, "/random")
    if top:
        out.append(
            f"fresh /random at 256 connections: {top['req_s']:.0f} req/s, p99 "
            f"{top['p99_ms']:.0f} ms (H100 target: 10,000 req/s, p99 100 ms)"
        )
    largest = max(p["rss_max_mb"] for p in points if p["server"].startswith("service"))
    out.append(
        f"cold start to /readyz {run['start_s']['service']:.1f} s (target 3 s on a CPU); largest "
        f"process {largest:.0f} MB (target 500 MB)"
    )
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="writes OUT.md and OUT.json")
    parser.add_argument("--seconds", type=float, default=10, help="measured seconds per point")
    parser.add_argument("--warmup", type=float, default=2, help="unmeasured seconds first")
    parser.add_argument("--concurrency", default="1,8,32,128,256")
    parser.add_argument("--client", choices=["wrk", "python"], help="default: wrk if installed")
    parser.add_argument("--batches", default="1,8,32,64,128,256")
    parser.add_argument("--component-seconds", type=float, default=2.0)
    parser.add_argument("--note", help="a line for the results: what else ran, and so on")
    parser.add_argument(
        "--workers-sweep",
        default="",
        help="also fresh /random at the highest concurrency with DNE_WORKERS at each of these",
    )
    args = parser.parse_args()
    args.client = args.client or ("wrk" if shutil.which("wrk") else "python")
    concurrency = [int(c) for c in args.concurrency.split(",")]
    settings = Settings()
    workers = worker_count(settings)
    threads = settings.threads or max(1, (os.cpu_count() or 1) // workers)
    load_before = os.getloadavg()[0]
    print(f"machine: {machine()}; workers {workers}, torch threads {threads}", flush=True)
    print("raw generator and PNG ...", flush=True)
    component = settings.model_copy(update={"threads": threads})
    batch_sizes = [int(b) for b in args.batches.split(",")]
    gen, pixels = generator_rates(component, args.component_seconds, batch_sizes)
    png = png_encoders(pixels, args.component_seconds)
    cached_path = f"/models/{settings.model}/{gen['version']}/seed/42"
    env = {"PYTHONPATH": str(ROOT), "DNE_THREADS": str(threads)}
    baseline = [sys.executable, "baselines.py", "--port", "{port}", "--workers", str(workers),
                "--http", settings.http]  # fmt: skip
    app_command = [sys.executable, "-m", "app", "--port", "{port}", "--log-level", "warning"]
    points, start_s = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        # The service as it ships: its defaults (the access log included, to /dev/null).
        service = Server("service", app_command, env, "/readyz")
        try:
            start_s["service"] = service.start_s
            static_file = Path(tmp) / "seed.png"
            static_file.write_bytes(httpx.get(service.url + cached_path).content)
            for path in ("/random", cached_path):
                for c in concurrency:
                    points.append(measure(service, path, c, args))
                    print(f"  service {path} c={c}: {points[-1]['req_s']:.0f} req/s", flush=True)
        finally:
            service.stop()
        # The same without painting ahead: what the batcher alone makes of /random.
        plain = Server(NO_POOL, app_command, {**env, "DNE_RANDOM_POOL": "0"}, "/readyz")
        try:
            for c in concurrency:
                points.append(measure(plain, "/random", c, args))
                print(f"  {NO_POOL} /random c={c}: {points[-1]['req_s']:.0f} req/s", flush=True)
        finally:
            plain.stop()
        for name, path, extra in (
            ("naive", "/random", {}),
            ("static", cached_path, {"DNE_STATIC_FILE": str(static_file)}),
        ):
            server = Server(name, baseline, {**env, **extra, "DNE_BASELINE": name}, path)
            try:
                start_s[name] = server.start_s
                for c in concurrency:
                    points.append(measure(server, path, c, args))
                    print(f"  {name} c={c}: {points[-1]['req_s']:.0f} req/s", flush=True)
            finally:
                server.stop()
    top = max(concurrency)
    for n in [int(w) for w in args.workers_sweep.split(",") if w]:
        sweep_env = {
            **env,
            "DNE_WORKERS": str(n),
            "DNE_THREADS": str(max(1, threads * workers // n)),
        }
        server = Server("service", app_command, sweep_env, "/readyz")
        try:
            point = measure(server, "/random", top, args)
            points.append({**point, "server": f"service, {n} workers", "start_s": server.start_s})
            print(f"  service, {n} workers, c={top}: {point['req_s']:.0f} req/s", flush=True)
        finally:
            server.stop()
    keys = ("device", "amp", "http", "max_batch_size", "max_delay_ms", "png_compress_level",
            "random_pool", "random_pool_batch")  # fmt: skip
    shown = {k: v for k, v in settings.model_dump(mode="json").items() if k in keys}
    run = {
        "date": f"{dt.datetime.now():%Y-%m-%d %H:%M}",
        "command": f"python {shlex.join(sys.argv)}",
        "machine": machine(),
        "settings": {**shown, "workers": workers, "threads": threads},
        "client": args.client,
        "seconds": args.seconds,
        "warmup": args.warmup,
        "cached_path": cached_path,
        "generator": gen,
        "png": png,
        "points": points,
        "start_s": start_s,
        "load_before": load_before,
        "load_after": os.getloadavg()[0],
        "note": args.note,
    }
    run["targets"] = targets(run)
    section = report(run)
    print("\n" + section)
    if args.out:
        record(args.out, run, section, HEADING)
        print(f"written to {args.out}.md and .json")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
