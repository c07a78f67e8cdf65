"""``python -m app --host H --port P``: serve with uvicorn; settings come from DNE_* vars.

DNE_WORKERS > 1 (the default on GPU hosts) starts that many worker processes on one
socket under a supervisor (app/workers.py).

SIGHUP makes the service look at its model store now: a new version is loaded, warmed up
and switched to without a restart (it also looks every DNE_STORE_POLL_S seconds)."""

from __future__ import annotations

import argparse
import ctypes
import logging
import os
import signal
import socket
import sys

import uvicorn
from fastapi import FastAPI
from pydantic import ValidationError

from app.access import LineWriter
from app.main import create_app
from app.server import server_config
from app.settings import get_settings
from app.workers import Supervisor, WorkerSlots, worker_count

M_ARENA_MAX = -8  # mallopt's parameter number in glibc's malloc.h
MALLOC_ARENAS = 2


def limit_malloc_arenas(arenas: int = MALLOC_ARENAS) -> None:
    """Cap glibc's malloc arenas for this process (its threads share them).

    glibc gives threads that allocate at once their own arenas (up to 8 per core), and
    what a thread frees stays resident in its arena: the batcher's thread, the PNG
    encoding threads and the thread computing truncation's means each kept their peak.
    Measured on the 2-core machine (benchmarks/serving.md): RSS at 256 connections 660-735
    MB by default, 399 MB with 2 arenas, the same req/s. MALLOC_ARENA_MAX in the
    environment wins; without glibc (musl, macOS) this does nothing."""
    if "MALLOC_ARENA_MAX" in os.environ:
        return
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return
    mallopt(M_ARENA_MAX, arenas)  # before the service starts its threads


def main() -> int:
    limit_malloc_arenas()
    parser = argparse.ArgumentParser(prog="python -m app", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1", help="address to bind")
    parser.add_argument("--port", type=int, default=8000, help="port to bind")
    parser.add_argument("--log-level", default="info")
    args = parser.parse_args()
    configure_logging(args.log_level)
    try:
        settings = get_settings()
        workers = worker_count(settings)
    except (ValidationError, ValueError) as exc:
        print(f"bad DNE_* setting: {exc}", file=sys.stderr)
        return 2
    if workers > 1:
        return Supervisor(settings, workers, args.host, args.port, args.log_level).run()
    return 0 if serve(args.host, args.port, args.log_level) else 1


def configure_logging(log_level: str) -> None:
    # uvicorn configures its own loggers only; this shows the service's (models loaded, warm).
    logging.basicConfig(level=log_level.upper(), format="%(levelname)-9s %(name)s: %(message)s")
    access = logging.getLogger("app.access")  # JSON lines, alone on stdout's lines
    access.addHandler(LineWriter(sys.stdout))
    access.setLevel(logging.INFO)
    access.propagate = False


def serve(
    host: str,
    port: int,
    log_level: str,
    sockets: list[socket.socket] | None = None,
    workers: WorkerSlots | None = None,
) -> bool:
    """One service until it is stopped; False if start-up failed (the reason printed)."""
    settings = get_settings()
    failures: list[BaseException] = []

    def stop_serving(exc: BaseException) -> None:
        failures.append(exc)
        server.should_exit = True  # a bad model file stops the process, loudly

    app = create_app(settings, on_failure=stop_serving, workers=workers)
    signal.signal(signal.SIGHUP, lambda signum, frame: rescan_store(app))
    server = uvicorn.Server(server_config(app, settings, host, port, log_level))
    server.run(sockets=sockets)
    if failures:
        print(f"start-up failed: {failures[0]}", file=sys.stderr)
        return False
    return True


def rescan_store(app: FastAPI) -> None:
    """SIGHUP: the registry looks at the store at once (before start-up: nothing to do)."""
    service = getattr(app.state, "service", None)
    if service is not None:
        service.registry.rescan_soon()


if __name__ == "__main__":
    sys.exit(main())
