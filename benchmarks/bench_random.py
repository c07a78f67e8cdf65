"""Throughput of ``GET /random`` with dynamic batching on, versus DNE_MAX_BATCH_SIZE=1.

    python benchmarks/bench_random.py --clients 32 --seconds 20 \
        --out benchmarks/throughput_random.md

Starts the real service (``python -m app``) once per setting, on the bundled default
model unless ``--store`` says otherwise, drives it with ``wrk`` (apt-get install wrk)
from one thread, and reads the mean batch size from ``/metrics``. The two runs go one
after the other in one invocation so their ratio is fair on a shared machine; pause
other work first (``kill -STOP``): the load average is recorded beside the table.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from model_store import DEFAULT_ROOT

UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def serve(port: int, store: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(
        [sys.executable, "-m", "app", "--port", str(port), "--log-level", "warning"],
        env={**os.environ, "DNE_MODEL_STORE": str(store), **env},
    )
    deadline = time.monotonic() + 120
    while True:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz").status_code == 200:
                return process
        except httpx.HTTPError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            raise SystemExit("the service did not become ready")
        time.sleep(0.25)


def batch_stats(port: int) -> tuple[float, float]:
    text = httpx.get(f"http://127.0.0.1:{port}/metrics").text
    values = {
        s.name: s.value
        for f in text_string_to_metric_families(text)
        for s in f.samples
        if not s.labels
    }
    return values["dne_batch_size_sum"], values["dne_batch_size_count"]


def milliseconds(text: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", text).groups()
    return float(number) * UNITS[unit]


def run_wrk(port: int, clients: int, seconds: int) -> dict[str, float]:
    out = subprocess.run(
        [
            "wrk",
            "-t1",
            f"-c{clients}",
            f"-d{seconds}s",
            "--latency",
            "--timeout",
            "10s",
            f"http://127.0.0.1:{port}/random",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    latency = dict(re.findall(r"^\s+(50|99)%\s+(\S+)$", out, re.M))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {
        "req_s": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
        "p50_ms": milliseconds(latency["50"]),
        "p99_ms": milliseconds(latency["99"]),
        "errors": int(errors.group(1)) if errors else 0,
    }


def measure(label: str, env: dict[str, str], args: argparse.Namespace) -> dict[str, object]:
    port = 8000 + os.getpid() % 1000
    process = serve(port, args.store, env)
    try:
        run_wrk(port, args.clients, 3)  # warm-up: caches, allocator, thread pools
        before = batch_stats(port)
        print(f"{label}: {args.clients} clients for {args.seconds} s ...", flush=True)
        result = run_wrk(port, args.clients, args.seconds)
        after = batch_stats(port)
    finally:
        process.terminate()
        process.wait()
    mean_batch = (after[0] - before[0]) / max(after[1] - before[1], 1)
    return {"setting": label, **result, "mean_batch": mean_batch}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", type=Path, default=DEFAULT_ROOT)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--seconds", type=int, default=20)
    parser.add_argument("--out", type=Path, help="Markdown file to append the results to")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed: apt-get install wrk")
    rows = [
        measure("batching on (DNE_MAX_BATCH_SIZE=64)", {"DNE_MAX_BATCH_SIZE": "64"}, args),
        measure("batching off (DNE_MAX_BATCH_SIZE=1)", {"DNE_MAX_BATCH_SIZE": "1"}, args),
    ]
    load = os.getloadavg()
    model = next(args.store.glob("emoji/*/manifest.json"), None)
    text = "\n".join(
        [
            f"### {dt.date.today()} on {platform.node()} ({os.cpu_count()} CPUs, "
            f"{platform.processor() or platform.machine()})",
            "",
            f"Command: `python {' '.join(sys.argv)}`  ",
            f"Model: {model.parent if model else args.store}; `GET /random` (64x64 PNG, "
            f"uncached by design), wrk 1 thread, {args.clients} connections, {args.seconds} s "
            f"after a 3 s warm-up; load average after: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}",
            "",
            "| setting | req/s | p50 ms | p99 ms | mean batch | non-2xx |",
            "|---|---:|---:|---:|---:|---:|",
            *(
                f"| {r['setting']} | {r['req_s']:.0f} | {r['p50_ms']:.1f} | {r['p99_ms']:.1f} | "
                f"{r['mean_batch']:.1f} | {r['errors']} |"
                for r in rows
            ),
            "",
            f"Batching on / off: {rows[0]['req_s'] / rows[1]['req_s']:.2f}x the throughput.",
            "",
        ]
    )
    print(text)
    if args.out:
        with args.out.open("a") as f:
            f.write(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
