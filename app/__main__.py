"""``python -m app --host H --port P``: serve with uvicorn; settings come from DNE_* vars.

DNE_WORKERS > 1 (the default on GPU hosts) starts that many worker processes on one
socket under a supervisor (app/workers.py).

SIGHUP makes the service look at its model store now: a new version is loaded, warmed up
and switched to without a restart (it also looks every DNE_STORE_POLL_S seconds)."""

from __future__ import annotations

import argparse
import logging
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


def main() -> int:
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
