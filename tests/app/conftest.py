"""Fixtures for the service: a temporary store of tiny random-weight models, the app with
its lifespan running, an HTTP client over ASGI, and a real redis-server on a free port."""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import torch
from fastapi import FastAPI

from app.batcher import Batcher
from app.main import create_app
from app.settings import Settings
from model_store import ModelStore, build_generator
from model_store.networks import Generator
from model_store.networks.layers import ConditionalBatchNorm

CLASSES = ["Smileys & Emotion", "Animals & Nature", "Flags"]
SLUGS = ["smileys-emotion", "animals-nature", "flags"]


def tiny_emoji(seed: int = 0) -> Generator:
    """Random weights are fine here: the tests are about the service, not the pictures."""
    torch.manual_seed(seed)
    config = {"z_dim": 16, "num_classes": 3, "channels": 4, "resolution": 16, "ngf": 8}
    generator = build_generator("dcgan", {**config, "conditioning": "cbn"}).eval()
    # Conditional BN starts as an identity (zero weights), which would make every class
    # paint the same image: random weights there let tests tell classes apart.
    for module in generator.modules():
        if isinstance(module, ConditionalBatchNorm):
            torch.nn.init.normal_(module.gain.weight, std=0.3)
            torch.nn.init.normal_(module.bias.weight, std=0.3)
    return generator


def save_emoji(store: ModelStore, seed: int = 0) -> None:
    store.save(
        tiny_emoji(seed),
        name="emoji",
        alpha="premultiplied",
        class_names=CLASSES,
        class_slugs=SLUGS,
        description="tiny random test model",
    )


def build_store(root: Path) -> ModelStore:
    store = ModelStore(root)
    save_emoji(store)
    torch.manual_seed(0)
    plain = build_generator(
        "mlp", {"z_dim": 8, "channels": 1, "resolution": 8, "hidden": [16]}
    ).eval()
    store.save(plain, name="plain", description="unconditional grey test model")
    return store


@pytest.fixture(scope="session")
def store_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("store")
    build_store(root)
    return root


@pytest.fixture
def settings(store_root: Path) -> Settings:
    # No /random pool: the tests count, hold and time the batches they cause (the pool's
    # own tests turn it on).
    return Settings(model_store=store_root, threads=1, max_delay_ms=2, random_pool=0)


class Running:
    """An app with its lifespan entered, and a client talking to it over ASGI."""

    def __init__(self, settings: Settings) -> None:
        self.app: FastAPI = create_app(settings)
        self._lifespan = self.app.router.lifespan_context(self.app)
        self.client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=self.app), base_url="http://test"
        )

    async def __aenter__(self) -> Running:
        await self._lifespan.__aenter__()
        await wait_ready(self.client)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.client.aclose()
        await self._lifespan.__aexit__(None, None, None)


async def eventually(condition: Callable[[], bool], what: str, timeout_s: float = 10) -> None:
    """Wait, turning the event loop, until ``condition()`` holds; fail after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"{what}: not after {timeout_s} s"
        await asyncio.sleep(0.001)


def hold_batches(batcher: Batcher[Any, Any]) -> threading.Event:
    """Each batch of ``batcher`` waits until the returned event is set (10 s at most): a
    device that stopped answering, or requests kept queued for as long as a test likes."""
    may_run, run = threading.Event(), batcher.run_batch

    def held_run(items: list[Any]) -> Any:
        may_run.wait(10)
        return run(items)

    batcher.run_batch = held_run
    return may_run


async def wait_ready(client: httpx.AsyncClient, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while (await client.get("/readyz")).status_code != 200:
        assert time.monotonic() < deadline, "service never became ready"
        await asyncio.sleep(0.05)


@pytest.fixture
async def running(settings: Settings) -> AsyncIterator[Running]:
    async with Running(settings) as r:
        yield r


@pytest.fixture
async def client(running: Running) -> httpx.AsyncClient:
    return running.client


@pytest.fixture
async def uncached(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """A client of an app whose cache holds nothing: every image is painted anew."""
    async with Running(settings.model_copy(update={"cache_max_bytes": 0})) as r:
        yield r.client


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RedisServer:
    """A real redis-server on a free port that tests can kill, restart and pause."""

    def __init__(self, folder: Path) -> None:
        self.folder, self.port = folder, free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                shutil.which("redis-server") or "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.folder),
            ],
            stdout=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                assert time.monotonic() < deadline, "redis-server did not start"
                time.sleep(0.05)

    def kill(self) -> None:
        assert self.process is not None
        self.process.kill()
        self.process.wait()

    def pause(self) -> None:
        assert self.process is not None
        self.process.send_signal(19)  # SIGSTOP: a hung Redis that accepts but never answers

    def resume(self) -> None:
        assert self.process is not None
        self.process.send_signal(18)  # SIGCONT


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    if shutil.which("redis-server") is None:
        pytest.fail("redis-server is not installed (scripts/test installs it)")
    server = RedisServer(tmp_path)
    server.start()
    yield server
    if server.process and server.process.poll() is None:
        server.resume()
        server.kill()
