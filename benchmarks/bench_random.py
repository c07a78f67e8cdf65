"""Throughput of ``GET /random`` with dynamic batching on, versus DNE_MAX_BATCH_SIZE=1.

    python benchmarks/bench_random.py --clients 32 --seconds 20 \
        --out benchmarks/throughput_random.md

Starts the real service (``python -m app``) once per setting, on the bundled default
model unless ``--store`` names another store, drives it with ``wrk`` (apt-get install
wrk: one C thread, so the load generator takes little of a small machine's CPU), and
reads the mean batch size from ``/metrics``. Both runs go one after the other in one
invocation so their ratio is fair on a shared machine; pause other work first: the load
average is recorded beside the table.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import re
import shlex
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families
from report import prepend

from model_store import DEFAULT_ROOT, ModelStore

MS_PER_UNIT = {"us": 1e-3, "ms": 1.0, "s": 1e3}
HEADING = "# `GET /random` throughput: dynamic batching on vs off\n\n"
SETTINGS = {
    "batching on (DNE_MAX_BATCH_SIZE=64)": {"DNE_MAX_BATCH_SIZE": "64"},
    "batching off (DNE_MAX_BATCH_SIZE=1)": {"DNE_MAX_BATCH_SIZE": "1"},
}


@dataclass
class Result:
    setting: str
    req_s: float
    p50_ms: float
    p99_ms: float
    non_2xx: int
    mean_batch: float
    load_after: float


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve(port: int, store: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(
        [sys.executable, "-m", "app", "--port", str(port), "--log-level", "warning"],
        env={**os.environ, "DNE_MODEL_STORE": str(store), **env},
    )
    deadline = time.monotonic() + 180
    while True:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz").status_code == 200:
                return process
        except httpx.HTTPError:
            pass  # not listening yet
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise SystemExit("the service did not become ready (its log is above)")
        time.sleep(0.25)


def counters(port: int) -> dict[str, float]:
    """The unlabelled samples of /metrics (batch size sum and count, images generated)."""
    text = httpx.get(f"http://127.0.0.1:{port}/metrics").text
    return {
        s.name: s.value
        for f in text_string_to_metric_families(text)
        for s in f.samples
        if not s.labels
    }


def wrk(port: int, clients: int, seconds: int) -> subprocess.Popen[str]:
    command = ["wrk", "-t1", f"-c{clients}", f"-d{seconds}s", "--latency", "--timeout", "10s"]
    return subprocess.Popen(
        [*command, f"http://127.0.0.1:{port}/random"], stdout=subprocess.PIPE, text=True
    )


def milliseconds(text: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", text).groups()
    return float(number) * MS_PER_UNIT[unit]


def parse_wrk(out: str) -> dict[str, float]:
    latency = dict(re.findall(r"^\s+(50|99)%\s+(\S+)$", out, re.M))
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {
        "req_s": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
        "p50_ms": milliseconds(latency["50"]),
        "p99_ms": milliseconds(latency["99"]),
        "non_2xx": int(non_2xx.group(1)) if non_2xx else 0,
    }


def drive(port: int, clients: int, seconds: int, label: str) -> str:
    """Run wrk, printing progress from /metrics every two seconds; wrk's report."""
    load = wrk(port, clients, seconds)
    started = last_time = time.monotonic()
    last = counters(port)
    while load.poll() is None:
        time.sleep(2)
        now, now_time = counters(port), time.monotonic()
        images = now["dne_images_generated_total"] - last["dne_images_generated_total"]
        batches = now["dne_batch_size_count"] - last["dne_batch_size_count"]
        print(
            f"  {label}: {min(now_time - started, seconds):4.0f}/{seconds} s  "
            f"{images / (now_time - last_time):6.0f} img/s  "
            f"mean batch {images / max(batches, 1):5.1f}",
            flush=True,
        )
        last, last_time = now, now_time
    out, _ = load.communicate()
    if load.returncode:
        raise SystemExit(f"wrk failed:\n{out}")
    return out


def measure(label: str, env: dict[str, str], args: argparse.Namespace) -> Result:
    port = free_port()
    print(f"{label}: starting the service ...", flush=True)
    process = serve(port, args.store, env)
    try:
        drive(port, args.clients, args.warmup, "warm-up")  # allocator, pools, branch caches
        before = counters(port)
        report = drive(port, args.clients, args.seconds, "measuring")
        after = counters(port)
    finally:
        process.terminate()
        process.wait()
    batches = after["dne_batch_size_count"] - before["dne_batch_size_count"]
    mean_batch = (after["dne_batch_size_sum"] - before["dne_batch_size_sum"]) / max(batches, 1)
    return Result(label, **parse_wrk(report), mean_batch=mean_batch, load_after=os.getloadavg()[0])


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def report(rows: list[Result], args: argparse.Namespace, model: str, load_before: float) -> str:
    return "\n".join(
        [
            f"### {dt.datetime.now():%Y-%m-%d %H:%M}: {os.cpu_count()} CPUs, {cpu_model()}",
            "",
            f"Command: `python {shlex.join(sys.argv)}`  ",
            f"Model: {model}; `GET /random` (uncached by design), wrk 1 thread, "
            f"{args.clients} connections, {args.seconds} s after a {args.warmup} s warm-up.  ",
            f"Load average (1 min) before: {load_before:.2f}"
            + (f"  \n{args.note}" if args.note else ""),
            "",
            "| setting | req/s | p50 ms | p99 ms | mean batch | non-2xx | load after |",
            "|---|---:|---:|---:|---:|---:|---:|",
            *(
                f"| {r.setting} | {r.req_s:.0f} | {r.p50_ms:.1f} | {r.p99_ms:.1f} | "
                f"{r.mean_batch:.1f} | {r.non_2xx} | {r.load_after:.2f} |"
                for r in rows
            ),
            "",
            f"Batching on / off: {rows[0].req_s / rows[1].req_s:.2f}x the throughput.",
            "",
        ]
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", type=Path, default=DEFAULT_ROOT, help="model store folder")
    parser.add_argument("--model", default="emoji", help="the model /random serves")
    parser.add_argument("--clients", type=int, default=32, help="concurrent connections")
    parser.add_argument("--seconds", type=int, default=20, help="measured seconds per setting")
    parser.add_argument("--warmup", type=int, default=3, help="unmeasured seconds first")
    parser.add_argument("--out", type=Path, help="Markdown file to add the results to")
    parser.add_argument("--note", help="a line for the results: what else ran, and so on")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed: apt-get install wrk")
    store = ModelStore(args.store)
    if not store.versions(args.model):
        raise SystemExit(f"no model {args.model!r} in {args.store}; pass --store")
    m = store.manifest(args.model)
    model = f"{m.name}/{m.version} ({m.architecture}, {m.resolution}x{m.resolution})"
    os.environ["DNE_MODEL"] = args.model
    load_before = os.getloadavg()[0]
    if load_before > 0.5:
        print(f"note: load average {load_before:.2f}: other work will lower the numbers")
    rows = [measure(label, env, args) for label, env in SETTINGS.items()]
    section = report(rows, args, model, load_before)
    print("\n" + section)
    if args.out:
        prepend(args.out, section, HEADING)
        print(f"written to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
