"""The real thing: ``python -m app`` as a process on a socket, scraped by a real Prometheus,
and the seams (no ``training`` import; a broken store stops start-up with a clear message)."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families

from .conftest import free_port
from .test_api import pixels

METRICS = {
    "dne_requests": "counter",
    "dne_request_duration_seconds": "histogram",
    "dne_batch_size": "histogram",
    "dne_queue_depth": "gauge",
    "dne_queue_wait_seconds": "histogram",
    "dne_inference_seconds": "histogram",
    "dne_png_encode_seconds": "histogram",
    "dne_cache_lookups": "counter",
    "dne_rejections": "counter",
    "dne_images_generated": "counter",
    "dne_model_info": "gauge",  # an Info: exposed as a gauge with value 1
}


def start_app(store: Path, port: int, **env: str) -> subprocess.Popen[str]:
    """``python -m app`` on ``port``. Its access log is off unless asked for: nobody
    reads the pipe while it serves, and a full pipe would block the server."""
    return subprocess.Popen(
        [sys.executable, "-m", "app", "--host", "127.0.0.1", "--port", str(port)],
        env={
            **os.environ,
            "DNE_MODEL_STORE": str(store),
            "DNE_THREADS": "1",
            "DNE_ACCESS_LOG": "false",
            **env,
        },
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def wait_for(url: str, process: subprocess.Popen[str], timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        assert process.poll() is None, process.communicate()[0][-3000:]
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, f"{url} never answered 200"
        time.sleep(0.2)


@pytest.fixture
def served(store_root: Path) -> Iterator[str]:
    port = free_port()
    process = start_app(store_root, port, DNE_RANDOM_POOL="0")  # counts only what tests ask
    try:
        wait_for(f"http://127.0.0.1:{port}/readyz", process)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.communicate(timeout=20)  # reaps it and closes the pipe


def test_python_m_app_serves_pngs_and_metrics_over_a_socket(served: str) -> None:
    with httpx.Client(base_url=served) as client:
        r = client.get("/random")
        assert r.status_code == 200 and Image.open(io.BytesIO(r.content)).size == (16, 16)
        for seed in (1, 1, 2):
            assert client.post("/generate", json={"seed": seed}).status_code == 200
        assert client.post("/generate", json={"seed": -1}).status_code == 422
        text = client.get("/metrics").text
    families = {f.name: f for f in text_string_to_metric_families(text)}
    for name, kind in METRICS.items():
        assert name in families and families[name].type == kind, name
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for f in families.values()
        for s in f.samples
    }
    assert (
        samples[
            ("dne_requests_total", (("method", "POST"), ("route", "/generate"), ("status", "200")))
        ]
        == 3
    )
    assert (
        samples[
            ("dne_requests_total", (("method", "POST"), ("route", "/generate"), ("status", "422")))
        ]
        == 1
    )
    assert samples[("dne_cache_lookups_total", (("result", "hit"),))] == 1
    assert samples[("dne_cache_lookups_total", (("result", "miss"),))] == 2
    assert samples[("dne_rejections_total", (("reason", "queue_full"),))] == 0
    # Three images painted (/random and two misses); warm-up is not traffic.
    painted = [
        samples[("dne_images_generated_total", ())],
        samples[("dne_batch_size_sum", ())],
        samples[("dne_queue_wait_seconds_count", ())],
        samples[("dne_png_encode_seconds_count", ())],
    ]
    assert painted == [3, 3, 3, 3]
    batches = samples[("dne_batch_size_count", ())]
    assert 1 <= batches <= 3 and samples[("dne_inference_seconds_count", ())] == batches
    assert 0 < samples[("dne_inference_seconds_sum", ())] < 10
    assert samples[("dne_queue_depth", (("model", "emoji"), ("version", "1")))] == 0
    # Buckets start at 0.5 ms: cache hits are sub-millisecond.
    first_bucket = (("le", "0.0005"), ("route", "/generate"))
    assert ("dne_request_duration_seconds_bucket", first_bucket) in samples
    assert samples[("dne_request_duration_seconds_count", (("route", "/generate"),))] == 4
    info = [labels for (name, labels), _ in samples.items() if name == "dne_model_info"]
    assert (
        ("architecture", "dcgan"),
        ("default", "true"),
        ("device", "cpu"),
        ("model", "emoji"),
        ("precision", "fp32"),
        ("version", "1"),
    ) in info
    # Route templates, never raw paths (a label per seed would grow without bound).
    assert not [k for k in samples if ("route", "/seed/1") in k[1]]


def test_a_real_prometheus_scrapes_the_service(served: str, tmp_path: Path) -> None:
    prometheus = shutil.which("prometheus")
    if prometheus is None:
        pytest.fail("prometheus is not installed (scripts/test installs it)")
    httpx.get(served + "/random")
    target = served.removeprefix("http://")
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global: {scrape_interval: 1s}\n"
        f"scrape_configs: [{{job_name: dne, static_configs: [{{targets: ['{target}']}}]}}]\n"
    )
    port = free_port()
    process = subprocess.Popen(
        [
            prometheus,
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    query = f"http://127.0.0.1:{port}/api/v1/query"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                r = httpx.get(query, params={"query": 'dne_requests_total{route="/random"}'})
                result = r.json()["data"]["result"] if r.status_code == 200 else []
            except httpx.HTTPError:
                result = []
            if result:
                break
            assert time.monotonic() < deadline, "Prometheus never scraped the service"
            time.sleep(0.5)
        assert float(result[0]["value"][1]) >= 1
        up = httpx.get(query, params={"query": "up{job='dne'}"}).json()["data"]["result"]
        assert up[0]["value"][1] == "1"
    finally:
        process.terminate()
        process.wait(timeout=20)


def test_importing_app_does_not_import_training() -> None:
    code = "import sys, app; print(json.dumps([m for m in sys.modules if m[:8] == 'training']))"
    out = subprocess.run(
        [sys.executable, "-c", "import json; " + code], capture_output=True, text=True, check=True
    )
    assert json.loads(out.stdout) == []


def test_a_broken_model_stops_start_up_naming_the_file(store_root: Path, tmp_path: Path) -> None:
    broken = tmp_path / "store"
    shutil.copytree(store_root, broken)
    weights = broken / "emoji" / "1" / "generator.safetensors"
    weights.write_bytes(weights.read_bytes()[:-10] + b"0123456789")
    process = start_app(broken, free_port())
    output, _ = process.communicate(timeout=60)
    assert process.returncode != 0
    assert "generator.safetensors" in output and "sha256" in output


def test_a_missing_default_model_stops_start_up(store_root: Path) -> None:
    process = start_app(store_root, free_port(), DNE_MODEL="unicorns")
    output, _ = process.communicate(timeout=60)
    assert process.returncode != 0 and "unicorns" in output and "DNE_MODEL" in output


@pytest.mark.slow
def test_replicas_on_different_cpus_paint_a_pinned_link_alike(store_root: Path) -> None:
    # Two real replicas with default settings: this CPU (AVX512, native bf16 where the
    # machine has AMX or AVX512-BF16) and one whose kernels are limited to AVX2, standing
    # for a host without native bf16 (where "auto" would mean fp32).
    older_cpu = {"DNNL_MAX_CPU_ISA": "AVX2", "ATEN_CPU_CAPABILITY": "avx2", "DNE_AMP": "none"}
    ports = free_port(), free_port()
    processes = [start_app(store_root, ports[0]), start_app(store_root, ports[1], **older_cpu)]
    try:
        urls = [f"http://127.0.0.1:{port}" for port in ports]
        for url, process in zip(urls, processes, strict=True):
            wait_for(url + "/readyz", process)
        for seed in range(8):
            link = f"/models/emoji/1/seed/{seed}?size=24"
            a, b = (httpx.get(url + link, timeout=30) for url in urls)
            assert a.status_code == b.status_code == 200
            assert a.headers["etag"] == b.headers["etag"]  # one name, one image
            diff = np.abs(pixels(a.content) - pixels(b.content)).max()
            assert diff <= 1, f"seed {seed}: the replicas differ by {diff} grey levels"
    finally:
        for process in processes:
            process.terminate()
            process.communicate(timeout=20)


ARENA_PROBE = """
import sys, threading
from app.__main__ import limit_malloc_arenas
from app.engine import Engine
from model_store import ModelStore
if sys.argv[1] == "limited":
    limit_malloc_arenas()
engine = Engine(ModelStore().load("emoji", 1))
def rss_mb():
    return int(open("/proc/self/status").read().split("VmRSS:")[1].split()[0]) // 1024
before = rss_mb()
fit = threading.Thread(target=engine.fit_truncation)  # as the service computes them
fit.start()
fit.join()
print(rss_mb() - before)
"""


@pytest.mark.slow
def test_python_m_app_caps_malloc_arenas_so_a_thread_keeps_no_peak() -> None:
    """glibc keeps what a thread frees in that thread's arena: computing truncation's
    means in a thread kept ~150 MB resident; with python -m app's cap, ~20 MB."""
    env = {k: v for k, v in os.environ.items() if k != "MALLOC_ARENA_MAX"}
    grown = {}
    for mode in ("default", "limited"):
        done = subprocess.run(
            [sys.executable, "-c", ARENA_PROBE, mode],
            capture_output=True, text=True, env=env, check=True,
        )  # fmt: skip
        grown[mode] = int(done.stdout.split()[-1])
    assert grown["default"] > 80, grown  # the effect is real here
    assert grown["limited"] < grown["default"] / 2, grown
