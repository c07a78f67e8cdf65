"""Model versions: every stored version answers its pinned link (loaded on first use, a
bounded number kept), and a new version in the store is switched to once warm."""

from __future__ import annotations

import asyncio
import logging
import shutil
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from app import registry as registry_module
from app.registry import ModelRegistry
from app.settings import Settings
from model_store import LoadedModel, ModelStore

from .conftest import CLASSES, SLUGS, Running, eventually, hold_batches, save_emoji, tiny_emoji
from .test_api import metric, pixels

PINNED_1, PINNED_2 = "/models/emoji/1/seed/5", "/models/emoji/2/seed/5"


class Loads:
    """Counts real loads by (name, version); a version in ``held`` waits for ``go``."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.counts: Counter[tuple[str, int]] = Counter()
        self.held: set[tuple[str, int]] = set()
        self.go = threading.Event()
        load = ModelStore.load

        def counted(store: ModelStore, name: str, version: Any = "latest", *a: Any) -> LoadedModel:
            self.counts[(name, int(version))] += 1
            if (name, int(version)) in self.held:
                assert self.go.wait(20), "the test never let the load go on"
            return load(store, name, version, *a)

        monkeypatch.setattr(ModelStore, "load", counted)


@pytest.fixture
def loads(monkeypatch: pytest.MonkeyPatch) -> Iterator[Loads]:
    spy = Loads(monkeypatch)
    yield spy
    spy.go.set()


@pytest.fixture
def root(store_root: Path, tmp_path: Path) -> Path:
    """A store of its own (emoji 1, plain 1) that a test may add versions to."""
    shutil.copytree(store_root, tmp_path / "store")
    return tmp_path / "store"


def versions_settings(root: Path, **changes: Any) -> Settings:
    # No polling: each test says when the store is looked at (registry.rescan()); no
    # /random pool: the tests count queues and loads.
    base = {"model_store": root, "threads": 1, "max_delay_ms": 2, "cache_max_bytes": 0}
    base["random_pool"] = 0
    return Settings(**{**base, "store_poll_s": 0, **changes})


def registry(r: Running) -> ModelRegistry:
    return r.app.state.service.registry


async def get_ok(client: httpx.AsyncClient, url: str) -> httpx.Response:
    response = await client.get(url)
    assert response.status_code == 200, (url, response.text)
    return response


async def test_every_stored_version_answers_its_pinned_link(root: Path, loads: Loads) -> None:
    async with Running(versions_settings(root)) as r:
        v1 = pixels((await get_ok(r.client, PINNED_1)).content)  # v1 as the default paints it
    save_emoji(ModelStore(root), seed=1)  # emoji 2, the default from now on
    async with Running(versions_settings(root)) as r:
        assert (await r.client.get("/seed/5")).headers["location"] == PINNED_2
        assert loads.counts[("emoji", 1)] == 1  # the default only, so far
        old = await get_ok(r.client, PINNED_1)
        assert old.headers["x-model-version"] == "1" and "immutable" in old.headers["cache-control"]
        assert np.abs(pixels(old.content) - v1).max() <= 1
        new = pixels((await get_ok(r.client, PINNED_2)).content)
        assert np.abs(new - v1).max() > 8  # other weights, another image
        missing = await r.client.get("/models/emoji/3/seed/5")
        assert missing.status_code == 404 and missing.json() == {
            "detail": "version: not stored; this service has emoji versions 1, 2",
            "field": "version",
        }
        listed = {(m["name"], m["version"]): m for m in (await r.client.get("/models")).json()}
        assert listed[("emoji", 1)]["served"] and not listed[("emoji", 1)]["default"]
        assert listed[("emoji", 2)]["served"] and listed[("emoji", 2)]["default"]
        text = (await r.client.get("/metrics")).text
        assert metric(text, "dne_model_info", model="emoji", version="1", default="false") == 1
        assert metric(text, "dne_model_info", model="emoji", version="2", default="true") == 1
        for version in ("1", "2"):  # one queue each, one series each
            assert metric(text, "dne_queue_depth", model="emoji", version=version) == 0


async def test_concurrent_first_requests_load_a_version_once(root: Path, loads: Loads) -> None:
    save_emoji(ModelStore(root), seed=1)
    async with Running(versions_settings(root)) as r:
        responses = await asyncio.gather(
            *(r.client.get(f"/models/emoji/1/seed/{seed}") for seed in range(8))
        )
        assert [x.status_code for x in responses] == [200] * 8
        assert {x.headers["x-model-version"] for x in responses} == {"1"}
        assert loads.counts[("emoji", 1)] == 1


async def test_loading_happens_off_the_event_loop_and_a_long_one_answers_503(
    root: Path, loads: Loads
) -> None:
    save_emoji(ModelStore(root), seed=1)
    loads.held.add(("emoji", 1))  # emoji 1's weights come from a very slow disk
    async with Running(versions_settings(root, request_timeout_s=2)) as r:
        waiting = asyncio.create_task(r.client.get(PINNED_1))
        await eventually(lambda: loads.counts[("emoji", 1)] == 1, "the load begins")
        for _ in range(3):  # the loop serves others meanwhile
            assert (await get_ok(r.client, "/random")).headers["x-model-version"] == "2"
        assert (await r.client.get("/readyz")).status_code == 200
        late = await asyncio.wait_for(waiting, 10)
        assert late.status_code == 503 and late.headers["retry-after"] == "1"
        assert late.json() == {
            "detail": "version: still loading; try again shortly",
            "field": "version",
        }
        loads.go.set()
        await get_ok(r.client, PINNED_1)
        assert loads.counts[("emoji", 1)] == 1  # the first load went on and is used


async def test_the_least_recently_used_extra_version_is_unloaded_once_drained(
    root: Path, loads: Loads, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(registry_module, "UNLOAD_GRACE_S", 0.05)
    store = ModelStore(root)
    save_emoji(store, seed=1)
    save_emoji(store, seed=2)  # emoji 3 is the default; 1 and 2 share one extra place
    settings = versions_settings(root, extra_versions=1, max_batch_size=2)
    async with Running(settings) as r:
        models = registry(r)
        await get_ok(r.client, PINNED_1)
        one = models._served[("emoji", 1)].batcher
        batch_may_run = hold_batches(one)
        queued = [
            asyncio.create_task(r.client.get(f"/models/emoji/1/seed/{s}")) for s in range(10, 14)
        ]
        await eventually(lambda: one.depth == 2, "two requests queued behind a held batch")
        await get_ok(r.client, PINNED_2)  # emoji 2 takes the extra place
        assert {(s.manifest.name, s.manifest.version) for s in models.served()} == {
            ("emoji", 2),
            ("emoji", 3),
            ("plain", 1),
        }
        text = (await r.client.get("/metrics")).text
        with pytest.raises(AssertionError):
            metric(text, "dne_model_info", model="emoji", version="1")
        batch_may_run.set()
        responses = await asyncio.wait_for(asyncio.gather(*queued), 20)
        assert [x.status_code for x in responses] == [200] * 4  # drained, not dropped
        await eventually(lambda: one.closed, "emoji 1's batcher stops")
        await eventually(lambda: not models._unloading, "the unload finishes")
        text = (await r.client.get("/metrics")).text
        with pytest.raises(AssertionError):
            metric(text, "dne_queue_depth", model="emoji", version="1")
        again = await get_ok(r.client, PINNED_1)  # loaded anew; emoji 2 goes
        assert again.headers["x-model-version"] == "1" and loads.counts[("emoji", 1)] == 2
        assert ("emoji", 2) not in models._served and models.defaults()["emoji"] == 3


async def test_a_version_that_fails_to_load_answers_503_and_the_others_serve_on(
    root: Path, tmp_path: Path, loads: Loads
) -> None:
    save_emoji(ModelStore(root), seed=1)
    weights = root / "emoji" / "1" / "generator.safetensors"
    good = weights.read_bytes()
    weights.write_bytes(good[:-10] + b"0123456789")
    async with Running(versions_settings(root)) as r:
        for _ in range(2):  # the second is answered from the failure: no second load
            broken = await r.client.get(PINNED_1)
            assert broken.status_code == 503 and broken.headers["retry-after"] == "60"
            assert broken.json() == {
                "detail": "version: stored, but it could not be loaded; the service log says why",
                "field": "version",
            }
            assert str(tmp_path) not in broken.text
        assert loads.counts[("emoji", 1)] == 1
        await get_ok(r.client, PINNED_2)
        await get_ok(r.client, "/random")
        for path in ("/readyz", "/healthz"):
            await get_ok(r.client, path)
        weights.write_bytes(good)  # mended: its files changed, so it is tried again
        await registry(r).rescan()
        assert (await get_ok(r.client, PINNED_1)).headers["x-model-version"] == "1"


async def test_a_new_version_is_loaded_and_warmed_beside_the_old_then_switched_to(
    root: Path, loads: Loads
) -> None:
    async with Running(versions_settings(root)) as r:
        models = registry(r)
        v1 = pixels((await get_ok(r.client, PINNED_1)).content)
        save_emoji(ModelStore(root), seed=1)
        assert (await r.client.get(PINNED_2)).status_code == 404  # not scanned yet
        loads.held.add(("emoji", 2))
        rescan = asyncio.create_task(models.rescan())
        await eventually(lambda: loads.counts[("emoji", 2)] == 1, "emoji 2 begins to load")
        for _ in range(3):  # the old one serves while the new one loads
            assert (await get_ok(r.client, "/random")).headers["x-model-version"] == "1"
        assert (await get_ok(r.client, "/readyz")).json()["models"]["emoji"] == 1
        loads.go.set()
        await asyncio.wait_for(rescan, 30)
        # Switched only once warm: its warm-up batches ran before anything asked for it.
        assert (await get_ok(r.client, "/readyz")).json()["models"] == {"emoji": 2, "plain": 1}
        assert (await get_ok(r.client, "/random")).headers["x-model-version"] == "2"
        assert (await r.client.get("/seed/5")).headers["location"] == PINNED_2
        old = await get_ok(r.client, PINNED_1)
        assert np.abs(pixels(old.content) - v1).max() <= 1
        assert loads.counts[("emoji", 1)] == 1  # kept loaded through the switch
        text = (await r.client.get("/metrics")).text
        assert metric(text, "dne_model_info", model="emoji", version="1", default="false") == 1
        assert metric(text, "dne_model_info", model="emoji", version="2", default="true") == 1


async def test_model_version_pins_the_default_against_new_versions(root: Path) -> None:
    async with Running(versions_settings(root, model_version=1)) as r:
        save_emoji(ModelStore(root), seed=1)
        await registry(r).rescan()
        assert (await get_ok(r.client, "/readyz")).json()["models"]["emoji"] == 1
        assert (await get_ok(r.client, PINNED_2)).headers["x-model-version"] == "2"
        assert (await get_ok(r.client, "/random")).headers["x-model-version"] == "1"


async def test_a_version_folder_is_ignored_until_whole_and_a_broken_one_changes_nothing(
    root: Path, tmp_path: Path, loads: Loads, caplog: pytest.LogCaptureFixture
) -> None:
    """A folder copied in by hand (not renamed into place as ModelStore.save does): no
    manifest yet, then a manifest whose weights are still being copied, then whole."""
    side = ModelStore(tmp_path / "side")
    side.save(
        tiny_emoji(1), name="emoji", version=2, alpha="premultiplied", class_names=CLASSES,
        class_slugs=SLUGS, description="copied in by hand",
    )  # fmt: skip
    source, folder = tmp_path / "side" / "emoji" / "2", root / "emoji" / "2"
    weights = (source / "generator.safetensors").read_bytes()
    manifest = (source / "manifest.json").read_text()
    async with Running(versions_settings(root)) as r:
        models = registry(r)
        folder.mkdir()
        (folder / "generator.safetensors").write_bytes(weights[: len(weights) // 2])
        (folder / "manifest.json").write_text(manifest[: len(manifest) // 2])
        await models.rescan()
        assert models.defaults()["emoji"] == 1
        assert (await r.client.get(PINNED_2)).status_code == 404
        assert [m["version"] for m in (await get_ok(r.client, "/models")).json()] == [1, 1]
        (folder / "manifest.json").write_text(manifest.replace('"version": 2', '"version": 1'))
        await models.rescan()  # a manifest that names another folder: still ignored
        assert models.defaults()["emoji"] == 1
        with caplog.at_level(logging.ERROR, logger="app"):
            (folder / "manifest.json").write_text(manifest)  # the weights are half there
            await models.rescan()
        assert models.defaults()["emoji"] == 1 and models.ready
        assert "emoji stays at version 1: version 2 failed to load" in caplog.text
        assert "sha256" in caplog.text
        assert (await get_ok(r.client, "/random")).headers["x-model-version"] == "1"
        await models.rescan()  # nothing changed: not tried again
        assert loads.counts[("emoji", 2)] == 1
        (folder / "generator.safetensors").write_bytes(weights)
        await models.rescan()
        assert models.defaults()["emoji"] == 2
        assert (await get_ok(r.client, "/random")).headers["x-model-version"] == "2"


async def test_removing_the_latest_version_goes_back_to_the_one_before(
    root: Path, loads: Loads, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(registry_module, "UNLOAD_GRACE_S", 0.05)
    save_emoji(ModelStore(root), seed=1)
    async with Running(versions_settings(root)) as r:
        models = registry(r)
        await get_ok(r.client, PINNED_1)
        two = models.default("emoji").batcher
        shutil.rmtree(root / "emoji" / "2")  # a bad release, taken back
        await models.rescan()
        assert models.defaults()["emoji"] == 1 and loads.counts[("emoji", 1)] == 1
        assert (await get_ok(r.client, "/random")).headers["x-model-version"] == "1"
        assert (await r.client.get(PINNED_2)).status_code == 404
        await eventually(lambda: two.closed, "emoji 2's batcher stops")
