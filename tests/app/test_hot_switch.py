"""The hot version switch, for real: ``python -m app`` on a socket, under a bounded load,
while a new version is exported into its store. It notices (a poll, or SIGHUP), loads and
warms the new version beside the old one and switches: no request fails, and the old
version's pinned link still paints the old version's image."""

from __future__ import annotations

import asyncio
import shutil
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np
import pytest

from model_store import ModelStore

from .conftest import free_port, save_emoji
from .test_api import metric, pixels
from .test_process import start_app, wait_for

WORKERS = 4  # concurrent clients: a bounded load, not a flood
OLD_LINK = "/models/emoji/1/seed/7"


@dataclass
class Traffic:
    """What the clients saw: the version of each unpinned answer, in order per client."""

    failures: list[str] = field(default_factory=list)
    versions: list[list[str]] = field(default_factory=lambda: [[] for _ in range(WORKERS)])
    old_images: list[bytes] = field(default_factory=list)


async def client_loop(base: str, worker: int, traffic: Traffic, stop: asyncio.Event) -> None:
    paths = ["/random", f"/seed/{worker}", OLD_LINK]
    async with httpx.AsyncClient(base_url=base, timeout=30, follow_redirects=True) as client:
        n = 0
        while not stop.is_set():
            path = paths[n % len(paths)]
            n += 1
            try:
                r = await client.get(path)
            except httpx.HTTPError as exc:
                traffic.failures.append(f"{path}: {type(exc).__name__}")
                continue
            if r.status_code != 200:
                traffic.failures.append(f"{path}: {r.status_code} {r.text[:200]}")
            elif path == OLD_LINK:
                traffic.old_images.append(r.content)
            else:
                traffic.versions[worker].append(r.headers["x-model-version"])


async def switch_under_load(
    base: str, export: Callable[[], None], notice: Callable[[], None]
) -> Traffic:
    traffic, stop = Traffic(), asyncio.Event()
    clients = [asyncio.create_task(client_loop(base, w, traffic, stop)) for w in range(WORKERS)]
    async with httpx.AsyncClient(base_url=base) as probe:
        try:
            await asyncio.sleep(0.5)  # traffic on the old version first
            await asyncio.to_thread(export)
            notice()
            deadline = time.monotonic() + 60
            while (await probe.get("/readyz")).json()["models"]["emoji"] != 2:
                assert time.monotonic() < deadline, "never switched to emoji 2"
                await asyncio.sleep(0.1)
            await asyncio.sleep(1.0)  # and traffic on the new one
        finally:
            stop.set()
            await asyncio.wait_for(asyncio.gather(*clients), 60)
    return traffic


@pytest.mark.slow
@pytest.mark.parametrize("noticed_by", ["poll", "sighup"])
def test_a_new_version_switches_in_under_load_without_a_failed_request(
    store_root: Path, tmp_path: Path, noticed_by: str
) -> None:
    root = tmp_path / "store"
    shutil.copytree(store_root, root)
    port = free_port()
    # No cache: each answer below was painted by the version it names, not remembered.
    poll = "0.2" if noticed_by == "poll" else "0"  # 0: SIGHUP only
    process = start_app(root, port, DNE_STORE_POLL_S=poll, DNE_CACHE_MAX_BYTES="0")
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(f"{base}/readyz", process)
        before = httpx.get(base + OLD_LINK)
        assert before.headers["x-model-version"] == "1"

        def notice() -> None:
            if noticed_by == "sighup":
                time.sleep(1.0)  # unasked, it does not look (polling is off)
                assert httpx.get(f"{base}/readyz").json()["models"]["emoji"] == 1
                process.send_signal(signal.SIGHUP)

        traffic = asyncio.run(
            switch_under_load(base, lambda: save_emoji(ModelStore(root), seed=1), notice)
        )
        assert traffic.failures == []
        for seen in traffic.versions:
            # Atomic: each client saw version 1, then version 2, never 1 again.
            assert seen and seen == sorted(seen) and seen[-1] == "2", seen
        assert any(seen[0] == "1" for seen in traffic.versions)
        assert len(traffic.old_images) >= 2
        for image in traffic.old_images:  # painted by version 1, before and after
            assert np.abs(pixels(image) - pixels(before.content)).max() <= 1
        new = httpx.get(f"{base}/models/emoji/2/seed/7")
        assert np.abs(pixels(new.content) - pixels(before.content)).max() > 8
        text = httpx.get(f"{base}/metrics").text
        assert metric(text, "dne_model_info", model="emoji", version="1", default="false") == 1
        assert metric(text, "dne_model_info", model="emoji", version="2", default="true") == 1
        for version in ("1", "2"):
            assert metric(text, "dne_queue_depth", model="emoji", version=version) == 0
        assert metric(text, "dne_rejections_total", reason="queue_full") == 0
    finally:
        process.terminate()
        log = process.communicate(timeout=30)[0]
    assert "emoji: version 2 is the default now (was 1)" in log
