"""Several worker processes on one socket (DNE_WORKERS): one replica that uses every core.

One Python process runs out of CPU (HTTP, PNG encoding, the event loop) long before a
GPU is busy, so ``python -m app`` can start N workers, each a whole service (its own
model copy, batcher, cache and event loop), all accepting from one listening socket that
this supervisor binds. The supervisor itself serves nothing; it:

- makes a fresh directory for prometheus-client's multiprocess files, so ``/metrics``
  from any worker adds up every worker (app/metrics.py), and removes it at exit;
- keeps one byte per worker in shared memory: the worker's own readiness, which every
  worker's ``/readyz`` reads, so the replica is ready only when all of them are;
- replaces a worker that dies (its open connections are closed by the kernel: their
  clients get an error at once, not a hang), and stops everything when a worker could
  not start because of a bad model file (restarting cannot mend that);
- forwards SIGHUP (look at the model store now) to every worker, and on SIGTERM or
  SIGINT stops them all, each draining what it has queued.
"""

from __future__ import annotations

import ctypes
import logging
import multiprocessing
import multiprocessing.connection
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
from multiprocessing.sharedctypes import SynchronizedArray
from pathlib import Path
from types import FrameType
from typing import Any

from app.settings import Settings

log = logging.getLogger("app.workers")
START_FAILED = 3  # a worker's exit status when its model could not be loaded: fatal
RESTART_PAUSE_S = 1.0  # a worker that dies within RESTART_WINDOW_S of its start waits this
RESTART_WINDOW_S = 10.0


def worker_count(settings: Settings, cores: int | None = None) -> int:
    """DNE_WORKERS, or the default for this host (0 = derived).

    On a CPU host one process already uses every core in the generator (torch's own
    threads), which is where the time goes; on a GPU host the generator is idle and the
    processes are the limit, so one worker per two cores (the rest: PNG threads and
    the kernel's network work)."""
    if settings.workers and settings.workers > 1 and shared_state_needs_one(settings):
        raise ValueError(
            "DNE_RATE_LIMIT_PER_S without DNE_REDIS_URL keeps the buckets in one process: "
            "with DNE_WORKERS > 1 each worker would allow the whole rate; set DNE_REDIS_URL "
            "or DNE_WORKERS=1"
        )
    if settings.workers:
        return settings.workers
    if shared_state_needs_one(settings) or settings.torch_device().type != "cuda":
        return 1
    return max(1, (cores or os.cpu_count() or 1) // 2)


def shared_state_needs_one(settings: Settings) -> bool:
    return settings.rate_limit_per_s > 0 and not settings.redis_url


class WorkerSlots:
    """Which workers of this replica are ready: one byte each, in shared memory."""

    def __init__(self, flags: SynchronizedArray[Any] | Any, index: int) -> None:
        self.flags, self.index = flags, index

    def publish(self, ready: bool) -> None:
        self.flags[self.index] = 1 if ready else 0

    def not_ready(self) -> list[int]:
        return [i for i in range(len(self.flags)) if not self.flags[i]]

    def __len__(self) -> int:
        return len(self.flags)


def run_worker(
    index: int, sock: socket.socket, flags: Any, host: str, port: int, log_level: str
) -> None:
    """A worker process: the whole service on the supervisor's socket."""
    from app.__main__ import configure_logging, limit_malloc_arenas, serve

    limit_malloc_arenas()
    configure_logging(log_level)
    slots = WorkerSlots(flags, index)
    started = serve(host, port, log_level, sockets=[sock], workers=slots)
    sys.exit(0 if started else START_FAILED)


class Supervisor:
    def __init__(self, settings: Settings, count: int, host: str, port: int, log_level: str):
        self.settings, self.count = settings, count
        self.host, self.port, self.log_level = host, port, log_level
        self.context = multiprocessing.get_context("spawn")  # torch and fork do not mix
        self.flags = self.context.RawArray(ctypes.c_byte, count)
        self.workers: dict[int, Any] = {}
        self.started_at: dict[int, float] = {}
        self.stopping = False

    def run(self) -> int:
        metrics_dir = Path(tempfile.mkdtemp(prefix="dne-metrics-"))
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)  # the workers inherit it
        if not self.settings.threads:  # torch would start one thread per core in each
            os.environ["DNE_THREADS"] = str(max(1, (os.cpu_count() or 1) // self.count))
        import uvicorn

        sock = uvicorn.Config(None, host=self.host, port=self.port).bind_socket()
        signal.signal(signal.SIGTERM, self._stop)
        signal.signal(signal.SIGINT, self._stop)
        signal.signal(signal.SIGHUP, self._forward)
        try:
            for index in range(self.count):
                self._start(index, sock)
            log.info("%d workers serving on %s:%d", self.count, self.host, self.port)
            return self._watch(sock, metrics_dir)
        finally:
            self._stop_all()
            sock.close()
            shutil.rmtree(metrics_dir, ignore_errors=True)

    def _start(self, index: int, sock: socket.socket) -> None:
        self.flags[index] = 0
        process = self.context.Process(
            target=run_worker,
            args=(index, sock, self.flags, self.host, self.port, self.log_level),
            name=f"dne-worker-{index}",
        )
        process.start()
        self.workers[index], self.started_at[index] = process, time.monotonic()

    def _watch(self, sock: socket.socket, metrics_dir: Path) -> int:
        from app.metrics import forget_process

        while not self.stopping:
            sentinels = [p.sentinel for p in self.workers.values()]
            multiprocessing.connection.wait(sentinels, timeout=0.5)
            for index, process in list(self.workers.items()):
                if process.exitcode is None or self.stopping:
                    continue
                self.flags[index] = 0
                forget_process(metrics_dir, process.pid)
                if process.exitcode == START_FAILED:
                    log.error("worker %d could not start (its log says why): stopping", index)
                    return 1
                log.error(
                    "worker %d (pid %d) died (%s); starting another",
                    index,
                    process.pid,
                    exit_reason(process.exitcode),
                )
                if time.monotonic() - self.started_at[index] < RESTART_WINDOW_S:
                    time.sleep(RESTART_PAUSE_S)  # dying at start: do not spin
                self._start(index, sock)
        return 0

    def _stop(self, signum: int, frame: FrameType | None) -> None:
        self.stopping = True

    def _forward(self, signum: int, frame: FrameType | None) -> None:
        for process in self.workers.values():
            if process.pid is not None and process.exitcode is None:
                os.kill(process.pid, signum)

    def _stop_all(self) -> None:
        """SIGTERM to each: it stops accepting, finishes its requests, drains its queue."""
        for index in self.workers:
            self.flags[index] = 0
        self._forward(signal.SIGTERM, None)
        # Each worker waits for its batchers at most DNE_REQUEST_TIMEOUT_S (app/batcher.py).
        deadline = time.monotonic() + self.settings.request_timeout_s + 10
        for process in self.workers.values():
            process.join(max(deadline - time.monotonic(), 0.1))
            if process.exitcode is None:
                log.error("worker pid %d did not stop in time: killed", process.pid)
                process.kill()
                process.join()


def exit_reason(code: int) -> str:
    if code < 0:
        return f"signal {signal.Signals(-code).name}"
    return f"exit status {code}"
