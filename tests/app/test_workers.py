"""Several worker processes (DNE_WORKERS, app/workers.py), for real: ``python -m app`` on a
socket, its workers found in /proc, one of them killed."""

from __future__ import annotations

import concurrent.futures
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from app.settings import Settings
from app.workers import worker_count

from .conftest import free_port
from .test_api import metric
from .test_process import start_app, wait_for

pytestmark = pytest.mark.slow


def children(pid: int) -> list[int]:
    return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def workers_of(pid: int) -> list[int]:
    """The supervisor's workers (not multiprocessing's resource tracker, if it runs one)."""
    return [c for c in children(pid) if b"spawn_main" in Path(f"/proc/{c}/cmdline").read_bytes()]


def server_side_owner(server_port: int, client_port: int, pids: list[int]) -> int | None:
    """Which of ``pids`` holds the server's end of the connection from ``client_port``."""
    inode = None
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, remote = (int(f.split(":")[1], 16) for f in fields[1:3])
        if (local, remote) == (server_port, client_port):
            inode = fields[9]
    if inode is None:
        return None
    for pid in pids:
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            try:
                if os.readlink(fd) == f"socket:[{inode}]":
                    return pid
            except OSError:
                continue
    return None


@pytest.fixture
def two_workers(store_root: Path) -> Iterator[tuple[subprocess.Popen[str], str, int]]:
    port = free_port()
    # Batches wait 1 s to fill: requests stay in a worker's queue long enough to kill it.
    process = start_app(
        store_root, port, DNE_WORKERS="2", DNE_MAX_DELAY_MS="1000", DNE_RANDOM_POOL="0"
    )  # the tests count the images they ask for
    try:
        wait_for(f"http://127.0.0.1:{port}/readyz", process)
        yield process, f"http://127.0.0.1:{port}", port
    finally:
        if process.poll() is None:
            process.terminate()
        process.communicate(timeout=60)


def fresh_connection_get(url: str) -> httpx.Response:
    with httpx.Client(timeout=20) as client:
        return client.get(url, headers={"Connection": "close"})


def test_workers_share_metrics_readiness_and_drain_on_stop(
    two_workers: tuple[subprocess.Popen[str], str, int],
) -> None:
    process, url, _ = two_workers
    assert len(workers_of(process.pid)) == 2
    with concurrent.futures.ThreadPoolExecutor(12) as pool:
        answers = list(pool.map(fresh_connection_get, [url + "/random"] * 12))
    assert [r.status_code for r in answers] == [200] * 12
    # Every scrape, whichever worker answers it, adds up both workers' counts.
    for _ in range(6):
        text = fresh_connection_get(url + "/metrics").text
        assert metric(text, "dne_requests_total", route="/random", status="200") == 12
        assert metric(text, "dne_images_generated_total") == 12
        assert metric(text, "dne_ready") == 1
        info = [
            s.labels
            for f in text_string_to_metric_families(text)
            for s in f.samples
            if s.name == "dne_model_info"
        ]
        assert len([i for i in info if i["model"] == "emoji"]) == 1  # one series, not two
        # Gauges add up (livesum): no series per worker process.
        pids = [
            s.name
            for f in text_string_to_metric_families(text)
            for s in f.samples
            if "pid" in s.labels
        ]
        assert pids == []
    # SIGTERM with requests queued (1 s batches): they are answered, then it exits.
    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        queued = [pool.submit(fresh_connection_get, url + "/random") for _ in range(6)]
        time.sleep(0.3)
        process.send_signal(signal.SIGTERM)
        assert [f.result().status_code for f in queued] == [200] * 6
    assert process.wait(timeout=60) == 0


def test_a_worker_that_dies_fails_its_requests_at_once_and_is_replaced(
    two_workers: tuple[subprocess.Popen[str], str, int],
) -> None:
    process, url, port = two_workers
    first = workers_of(process.pid)
    assert len(first) == 2
    clients = [httpx.Client(timeout=30) for _ in range(10)]
    with concurrent.futures.ThreadPoolExecutor(10) as pool:
        for client in clients:
            client.get(url + "/healthz")  # connected, and to which worker is now fixed
        owners = {}
        for client in clients:
            sock_port = None
            for conn in client._transport._pool.connections:  # type: ignore[attr-defined]
                stream = conn._connection._network_stream  # type: ignore[attr-defined]
                sock_port = stream.get_extra_info("socket").getsockname()[1]
            owners[client] = server_side_owner(port, sock_port, first)
        victim = next(iter(owners.values()))
        assert victim in first
        started = time.monotonic()
        futures = {c: pool.submit(c.get, url + "/random") for c in clients}
        time.sleep(0.3)  # queued: batches wait 1 s
        os.kill(victim, signal.SIGKILL)
        for client, future in futures.items():
            if owners[client] == victim:
                with pytest.raises(httpx.TransportError):
                    future.result()
                assert time.monotonic() - started < 5  # at once, not at a timeout
            else:
                assert future.result().status_code == 200
    for client in clients:
        client.close()
    # A new worker takes its place; the replica is ready again once it is warm.
    deadline = time.monotonic() + 60
    while True:
        now = workers_of(process.pid)
        if len(now) == 2 and victim not in now and httpx.get(url + "/readyz").status_code == 200:
            break
        assert time.monotonic() < deadline, f"no replacement: {now}"
        time.sleep(0.2)
    assert len(set(now) - set(first)) == 1
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(fresh_connection_get, [url + "/random"] * 8))
    assert [r.status_code for r in answers] == [200] * 8
    text = httpx.get(url + "/metrics").text
    assert metric(text, "dne_ready") == 1
    assert metric(text, "dne_queue_depth", model="emoji", version="1") == 0


def test_worker_count_default_and_the_rate_limit_that_needs_one_process() -> None:
    cpu = Settings(device="cpu")
    assert worker_count(cpu) == 1
    assert worker_count(Settings(device="cuda"), cores=16) == 8
    assert worker_count(Settings(device="cpu", workers=3)) == 3
    limited = Settings(device="cuda", rate_limit_per_s=5)
    assert worker_count(limited, cores=16) == 1  # buckets in one process: one worker
    assert worker_count(limited.model_copy(update={"redis_url": "redis://x"}), cores=16) == 8
    with pytest.raises(ValueError, match="DNE_REDIS_URL"):
        worker_count(limited.model_copy(update={"workers": 2}))
