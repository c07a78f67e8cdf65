"""Start-up, readiness and shutdown: the lifespan as an orchestrator sees it."""

from __future__ import annotations

import asyncio
import shutil
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from app.engine import Engine
from app.main import create_app
from app.settings import Settings
from model_store import LoadedModel, ModelStore

from .conftest import Running, eventually, hold_batches, save_emoji, wait_ready
from .test_api import metric, pixels


async def test_healthz_answers_at_once_and_readyz_waits_for_the_model(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A slow disk: loading waits until the test lets it go on.
    loading_may_finish = threading.Event()
    load = ModelStore.load

    def slow_load(self: ModelStore, *args: Any, **kwargs: Any) -> LoadedModel:
        loading_may_finish.wait(10)
        return load(self, *args, **kwargs)

    monkeypatch.setattr(ModelStore, "load", slow_load)
    app = create_app(settings)
    transport = httpx.ASGITransport(app=app)
    try:
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(transport=transport, base_url="http://test") as client,
        ):
            assert (await client.get("/healthz")).status_code == 200
            for path in ("/readyz", "/random"):
                r = await client.get(path)
                assert r.status_code == 503 and r.headers["retry-after"] == "1", path
                assert "warming up" in r.json()["detail"]
            loading_may_finish.set()
            await wait_ready(client)
            assert (await client.get("/random")).status_code == 200
            text = (await client.get("/metrics")).text
            assert metric(text, "dne_rejections_total", reason="not_ready") == 1
    finally:
        loading_may_finish.set()


async def test_a_broken_model_fails_start_up_without_telling_clients_where(
    store_root: Path, tmp_path: Path
) -> None:
    broken = tmp_path / "store"
    shutil.copytree(store_root, broken)
    weights = broken / "emoji" / "1" / "generator.safetensors"
    weights.write_bytes(weights.read_bytes()[:-10] + b"0123456789")
    failures: list[BaseException] = []
    app = create_app(Settings(model_store=broken, threads=1), on_failure=failures.append)
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://test") as client,
    ):
        deadline = time.monotonic() + 30
        while not failures:
            assert time.monotonic() < deadline, "start-up never failed"
            await asyncio.sleep(0.05)
        assert "generator.safetensors" in str(failures[0]) and "sha256" in str(failures[0])
        for path in ("/healthz", "/readyz"):
            r = await client.get(path)
            assert r.status_code == 503 and "start-up failed" in r.json()["detail"]
            assert str(tmp_path) not in r.text and "safetensors" not in r.text


async def test_model_version_pins_the_default_model(store_root: Path, tmp_path: Path) -> None:
    root = tmp_path / "store"
    shutil.copytree(store_root, root)
    save_emoji(ModelStore(root), seed=1)  # emoji version 2
    for pinned, served in ((1, "1"), ("latest", "2")):
        settings = Settings(model_store=root, threads=1, model_version=pinned)
        async with Running(settings) as r:
            image = await r.client.get("/random")
            assert image.headers["x-model-version"] == served
            redirect = await r.client.get("/seed/5")
            assert redirect.headers["location"] == f"/models/emoji/{served}/seed/5"
            listed = {
                (m["name"], m["version"]): m["served"]
                for m in (await r.client.get("/models")).json()
            }
            assert listed[("emoji", int(served))] and not listed[("emoji", 3 - int(served))]


async def test_shutdown_serves_the_requests_already_queued(settings: Settings) -> None:
    r = Running(settings.model_copy(update={"max_batch_size": 2, "cache_max_bytes": 0}))
    await r.__aenter__()
    app = r.app
    batcher = app.state.service.registry.default("emoji").batcher
    # The first batch waits for the test, so the other requests are surely still queued
    # when shutdown begins.
    batch_may_run = hold_batches(batcher)
    requests = [
        asyncio.create_task(r.client.post("/generate", json={"seed": s})) for s in range(12)
    ]
    await eventually(lambda: batcher.depth == 10, "ten requests queued behind the first two")
    stopping = asyncio.create_task(r.__aexit__())
    await eventually(lambda: batcher.closed, "the batcher is told to stop")
    batch_may_run.set()
    await asyncio.wait_for(stopping, 30)
    responses = await asyncio.wait_for(asyncio.gather(*requests), 30)
    assert [x.status_code for x in responses] == [200] * 12  # every queued request served
    # One that comes after the stop is refused cleanly, not left hanging.
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as late:
        refused = await asyncio.wait_for(late.post("/generate", json={"seed": 99}), 10)
    assert refused.status_code == 503 and "shutting down" in refused.json()["detail"]


async def test_a_hung_generator_answers_503_at_the_deadline_and_readyz_says_why(
    settings: Settings,
) -> None:
    tight = settings.model_copy(update={"request_timeout_s": 0.2, "cache_max_bytes": 0})
    async with Running(tight) as r:
        batcher = r.app.state.service.registry.default("emoji").batcher
        may_return = hold_batches(batcher)  # a device that stopped answering
        try:
            stuck = await asyncio.wait_for(r.client.post("/generate", json={"seed": 1}), 10)
            assert stuck.status_code == 503 and stuck.headers["retry-after"] == "1"
            assert "no result within 0.2 s" in stuck.json()["detail"]
            await eventually(lambda: batcher.health() is not None, "the hang is noticed")
            ready = await r.client.get("/readyz")
            assert ready.status_code == 503 and "batcher-emoji/1" in ready.json()["detail"]
            assert (await r.client.get("/healthz")).status_code == 200  # it may come back
        finally:
            may_return.set()
        await eventually(lambda: batcher.health() is None, "the batch returns")
        assert (await r.client.get("/readyz")).status_code == 200
        again = await asyncio.wait_for(r.client.post("/generate", json={"seed": 1}), 10)
        assert again.status_code == 200


async def test_ready_before_truncation_means_and_a_truncated_request_waits_for_them(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """/readyz does not wait for the class means (ψ = 1 needs none); a request at ψ ≠ 1
    waits for them, then gets the image a fully warmed service paints."""
    may_fit, fitting = threading.Event(), threading.Event()
    fit = Engine.fit_truncation

    def slow_fit(engine: Engine) -> None:
        fitting.set()
        may_fit.wait(10)
        fit(engine)

    monkeypatch.setattr(Engine, "fit_truncation", slow_fit)
    path = "/models/emoji/1/seed/5?truncation=0.5&category=flags"
    try:
        async with Running(settings) as running:  # ready: /readyz said 200
            client = running.client
            assert fitting.is_set() and not may_fit.is_set()
            assert (await client.get("/random")).status_code == 200
            assert (await client.get("/models/emoji/1/seed/5")).status_code == 200
            truncated = asyncio.create_task(client.get(path))
            await asyncio.sleep(0.3)
            assert not truncated.done()  # waiting for the means, not failed
            may_fit.set()
            r = await truncated
            assert r.status_code == 200
    finally:
        may_fit.set()
    monkeypatch.undo()
    async with Running(settings) as warmed:  # the means are computed before the request
        served = warmed.app.state.service.registry.default("emoji")
        await asyncio.wait_for(asyncio.shield(served.truncation), 10)
        expected = await warmed.client.get(path)
    assert np.abs(pixels(r.content) - pixels(expected.content)).max() <= 1
