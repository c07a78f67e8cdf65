"""The HTTP contract: images, determinism, batching through the routes, and errors."""

from __future__ import annotations

import asyncio
import io
import json
import re
import shutil

import numpy as np
import pytest
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families

from app.catalog import public_manifest
from model_store import DEFAULT_ROOT, ModelStore, TrainingInfo

from .conftest import CLASSES, SLUGS, Running, tiny_emoji


def pixels(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data))).astype(int)


def metric(text: str, name: str, **labels: str) -> float:
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return sample.value
    raise AssertionError(f"{name} {labels} not in /metrics")


async def test_random_is_a_fresh_png_of_the_model_resolution(client) -> None:
    seeds = set()
    for _ in range(3):
        r = await client.get("/random")
        assert r.status_code == 200 and r.headers["content-type"] == "image/png"
        assert r.headers["cache-control"] == "no-store"
        assert r.headers["x-content-type-options"] == "nosniff"
        assert (r.headers["x-model"], r.headers["x-model-version"]) == ("emoji", "1")
        assert r.headers["x-category"] in SLUGS
        image = Image.open(io.BytesIO(r.content))
        assert image.size == (16, 16) and image.mode == "RGBA"
        seed = int(r.headers["x-seed"])
        assert 0 <= seed < 2**53
        seeds.add(seed)
    assert len(seeds) == 3


async def test_random_seed_link_reproduces_the_same_image(client) -> None:
    r = await client.get("/random")
    again = await client.get(f"/seed/{r.headers['x-seed']}", follow_redirects=True)
    assert again.headers["x-category"] == r.headers["x-category"]
    assert np.abs(pixels(again.content) - pixels(r.content)).max() <= 1


async def test_seed_link_redirects_to_the_pinned_immutable_url(client) -> None:
    r = await client.get("/seed/42?category=flags&size=32")
    assert r.status_code == 302
    assert r.headers["location"] == "/models/emoji/1/seed/42?category=flags&size=32"
    assert "max-age=60" in r.headers["cache-control"]
    pinned = await client.get(r.headers["location"])
    assert pinned.status_code == 200 and "immutable" in pinned.headers["cache-control"]
    assert Image.open(io.BytesIO(pinned.content)).size == (32, 32)
    assert pinned.headers["x-category"] == "flags"
    etag = pinned.headers["etag"]
    cached = await client.get(r.headers["location"], headers={"If-None-Match": etag})
    assert cached.status_code == 304 and cached.headers["etag"] == etag
    other = await client.get("/models/emoji/1/seed/43?category=flags&size=32")
    assert other.headers["etag"] != etag


@pytest.mark.parametrize(
    ("if_none_match", "status"),
    [("{etag}", 304), ('"other", {etag}', 304), ("{strong}", 304), ("*", 304), ('"x"', 200)],
)
async def test_if_none_match_uses_weak_comparison(client, if_none_match: str, status: int) -> None:
    etag = (await client.get("/models/emoji/1/seed/9")).headers["etag"]
    assert etag.startswith('W/"')  # names the image, not its bytes (they may differ by ±1)
    header = if_none_match.format(etag=etag, strong=etag.removeprefix("W/"))
    r = await client.get("/models/emoji/1/seed/9", headers={"If-None-Match": header})
    assert r.status_code == status


async def test_same_seed_same_bytes_through_every_route(uncached) -> None:
    # The cache is off: each answer is painted anew, so equal bytes mean determinism.
    body = {"seed": "12345678901234567890", "category": "animals-nature"}
    first = await uncached.post("/generate", json=body)
    second = await uncached.post("/generate", json={**body, "seed": 12345678901234567890})
    pinned = await uncached.get("/models/emoji/1/seed/12345678901234567890?category=animals-nature")
    responses = (first, second, pinned)
    assert [r.status_code for r in responses] == [200] * 3
    assert [r.headers["x-cache"] for r in responses] == ["miss"] * 3
    assert first.content == second.content == pinned.content


async def test_latent_requests_are_deterministic_and_differ_from_each_other(uncached) -> None:
    z = [0.1 * i for i in range(16)]
    a = await uncached.post("/generate", json={"latent": z, "category": "flags"})
    b = await uncached.post("/generate", json={"latent": z, "category": "flags"})
    c = await uncached.post("/generate", json={"latent": [-x for x in z], "category": "flags"})
    assert [r.headers["x-cache"] for r in (a, b, c)] == ["miss"] * 3
    assert a.status_code == 200 and a.content == b.content and a.content != c.content
    plain = await uncached.post("/generate", json={"latent": [0.5] * 8, "model": "plain"})
    assert plain.status_code == 200 and Image.open(io.BytesIO(plain.content)).mode == "L"


async def test_the_cache_key_names_everything_that_changes_the_bytes(client) -> None:
    body = {"seed": 99, "category": "flags"}
    first = await client.post("/generate", json=body)
    assert first.headers["x-cache"] == "miss"
    # One image, however it is asked for: a hit with the first answer's bytes.
    for again in (
        client.post("/generate", json={**body, "seed": "99"}),
        client.post("/generate", json={**body, "size": 16}),  # the default size, said
        client.get("/models/emoji/1/seed/99?category=flags"),
    ):
        r = await again
        assert (r.headers["x-cache"], r.content) == ("hit", first.content)
    # Anything that changes the image is another key.
    for change in (
        {"seed": 100},
        {"category": "animals-nature"},
        {"truncation": 0.5},
        {"truncation": 0.5000001},
        {"size": 32},
        {"model": "plain", "category": None},
        {"seed": None, "latent": [0.0] * 16},
        {"seed": None, "latent": [0.0] * 15 + [1e-6]},
    ):
        r = await client.post("/generate", json={**body, **change})
        assert (r.status_code, r.headers["x-cache"]) == (200, "miss"), change


async def test_truncation_zero_gives_one_image_and_other_values_differ(client) -> None:
    a = await client.post("/generate", json={"seed": 1, "truncation": 0, "model": "plain"})
    b = await client.post("/generate", json={"seed": 2, "truncation": 0, "model": "plain"})
    c = await client.post("/generate", json={"seed": 1, "truncation": 1.5, "model": "plain"})
    assert np.abs(pixels(a.content) - pixels(b.content)).max() <= 1
    assert np.abs(pixels(a.content) - pixels(c.content)).max() > 1


async def test_concurrent_requests_share_batches_and_each_gets_its_own_image(settings) -> None:
    # No cache: every request below really goes through the batcher.
    async with Running(settings.model_copy(update={"cache_max_bytes": 0})) as r:
        seeds = list(range(100, 132))
        alone = {
            s: pixels((await r.client.post("/generate", json={"seed": s})).content) for s in seeds
        }
        before = metric((await r.client.get("/metrics")).text, "dne_batch_size_count")
        together = await asyncio.gather(
            *(r.client.post("/generate", json={"seed": s}) for s in seeds)
        )
        batches = metric((await r.client.get("/metrics")).text, "dne_batch_size_count") - before
    assert batches < len(seeds) / 2, f"{len(seeds)} concurrent requests took {batches} batches"
    for response, seed in zip(together, seeds, strict=True):
        assert response.status_code == 200 and response.headers["x-seed"] == str(seed)
        # Equal within one grey level, not bitwise: docs/design.md, "Bytes and links".
        assert np.abs(pixels(response.content) - alone[seed]).max() <= 1, seed
    assert len({a.tobytes() for a in alone.values()}) == len(seeds)  # really 32 images


async def test_identical_concurrent_requests_paint_once(client) -> None:
    painted = "dne_images_generated_total"
    before = metric((await client.get("/metrics")).text, painted)
    responses = await asyncio.gather(
        *(client.post("/generate", json={"seed": 777, "size": 24}) for _ in range(8))
    )
    assert len({r.content for r in responses}) == 1 and responses[0].status_code == 200
    assert metric((await client.get("/metrics")).text, painted) - before == 1


async def test_models_lists_manifests_and_health_endpoints_answer(client) -> None:
    models = (await client.get("/models")).json()
    by_name = {m["name"]: m for m in models}
    assert by_name["emoji"]["served"] and by_name["emoji"]["class_slugs"] == SLUGS
    assert by_name["plain"]["class_names"] == []
    assert (await client.get("/healthz")).json() == {"status": "alive"}
    ready = (await client.get("/readyz")).json()
    assert ready == {"status": "ready", "models": {"emoji": 1, "plain": 1}}
    page = await client.get("/")
    assert page.status_code == 200 and "/static/page.js" in page.text and "Another one" in page.text


BAD_REQUESTS = [
    ("post", "/generate", {"json": {"latent": [0.0] * 15}}, 422, "latent", "16"),
    (
        "post",
        "/generate",
        {"content": '{"latent": [NaN' + ", 0" * 15 + "]}"},
        422,
        "latent",
        "finite",
    ),
    (
        "post",
        "/generate",
        {"content": '{"latent": [Infinity' + ", 0" * 15 + "]}"},
        422,
        "latent",
        "finite",
    ),
    ("post", "/generate", {"json": {"latent": [11.0] + [0.0] * 15}}, 422, "latent", "10"),
    ("post", "/generate", {"json": {"seed": -1}}, 422, "seed", "unsigned"),
    ("post", "/generate", {"json": {"seed": 2**64}}, 422, "seed", "unsigned"),
    ("post", "/generate", {"json": {"seed": "12abc"}}, 422, "seed", "decimal"),
    ("post", "/generate", {"json": {"seed": 1.5}}, 422, "seed", "integer"),
    ("post", "/generate", {"json": {}}, 422, None, "exactly one"),
    ("post", "/generate", {"json": {"seed": 1, "latent": [0.0] * 16}}, 422, None, "exactly one"),
    ("post", "/generate", {"json": {"seed": 1, "colour": "red"}}, 422, "colour", "not permitted"),
    ("post", "/generate", {"json": {"seed": 1, "<b>x": 1}}, 422, None, "not permitted"),
    ("post", "/generate", {"content": "{not json"}, 422, None, "not valid JSON"),
    ("post", "/generate", {"json": {"seed": 1, "model": "unicorns"}}, 404, "model", "GET /models"),
    ("post", "/generate", {"json": {"seed": 1, "model": "Emoji"}}, 422, "model", "lower-case"),
    ("post", "/generate", {"json": {"seed": 1, "category": "cars"}}, 422, "category", "flags"),
    (
        "post",
        "/generate",
        {"json": {"seed": 1, "model": "plain", "category": "flags"}},
        422,
        "category",
        "no categories",
    ),
    ("post", "/generate", {"json": {"seed": 1, "truncation": 3}}, 422, "truncation", "2"),
    ("post", "/generate", {"json": {"seed": 1, "size": 100000}}, 422, "size", "512"),
    ("post", "/generate", {"content": '{"seed": true}'}, 422, "seed", "integer"),
    ("post", "/generate", {"content": '{"seed": " 12"}'}, 422, "seed", "decimal"),
    (
        "post",
        "/generate",
        {"content": '{"latent": [1e400' + ", 0" * 15 + "]}"},
        422,
        "latent",
        "finite",
    ),
    ("post", "/generate", {"json": {"latent": ["a"] * 16}}, 422, "latent", "number"),
    ("post", "/generate", {"content": "[]"}, 422, None, "JSON object"),
    ("get", "/random?truncation=nan", {}, 422, "truncation", "finite"),
    ("get", "/random?truncation=inf", {}, 422, "truncation", "finite"),
    ("get", "/random?category=", {}, 422, "category", "slug"),
    ("get", "/random?size=big", {}, 422, "size", "integer"),
    ("get", "/random?size=4", {}, 422, "size", "8"),
    ("get", "/seed/-5", {}, 422, "seed", "decimal"),
    ("get", "/seed/99999999999999999999999", {}, 422, "seed", "decimal"),
    ("get", "/models/emoji/7/seed/1", {}, 404, "version", "emoji version 1"),
    ("get", "/models/nope/1/seed/1", {}, 404, "model", "GET /models"),
    ("get", "/nowhere", {}, 404, None, "Not Found"),
    # Strict types (issue 12): JSON types in bodies, one ASCII spelling in URLs.
    ("post", "/generate", {"json": {"latent": ["1"] + [0] * 15}}, 422, "latent", "JSON number"),
    ("post", "/generate", {"json": {"latent": [True] + [0] * 15}}, 422, "latent", "JSON number"),
    ("post", "/generate", {"json": {"seed": 1, "size": "256"}}, 422, "size", "JSON integer"),
    ("post", "/generate", {"json": {"seed": 1, "size": 32.0}}, 422, "size", "JSON integer"),
    ("post", "/generate", {"json": {"seed": 1, "truncation": "0.5"}}, 422, "truncation", "number"),
    ("post", "/generate", {"json": {"seed": 1, "truncation": False}}, 422, "truncation", "number"),
    ("post", "/generate", {"json": {"seed": "007"}}, 422, "seed", "leading zeros"),
    ("post", "/generate", {"json": {"seed": 1, "category": "Flags"}}, 422, "category", "slug"),
    ("post", "/generate", {"json": {"seed": 1, "category": "2"}}, 422, "category", "flags"),
    ("get", "/models/emoji/1.0/seed/42", {}, 422, "version", "decimal"),
    ("get", "/models/emoji/01/seed/42", {}, 422, "version", "leading zeros"),
    ("get", "/models/emoji/0/seed/42", {}, 422, "version", "1 or more"),
    ("get", "/random?category=٨", {}, 422, "category", "ASCII"),
    ("get", "/random?size=٣٢", {}, 422, "size", "ASCII"),
    ("get", "/random?size=0256", {}, 422, "size", "leading zeros"),
    ("get", "/random?truncation=.5", {}, 422, "truncation", "0.5"),
    ("get", "/random?truncation=1_0", {}, 422, "truncation", "0.5"),
    ("get", "/random?truncation=١", {}, 422, "truncation", "ASCII"),
    ("get", "/seed/٤٢", {}, 422, "seed", "ASCII"),
    ("get", "/seed/42?size=32&foo=%3Cscript%3E", {}, 422, "foo", "unknown query parameter"),
    ("get", "/seed/42?%3Cb%3E=1", {}, 422, None, "unknown query parameter"),
    ("get", "/seed/42?size=32&size=32", {}, 422, "size", "more than once"),
    ("get", "/models/emoji/1/seed/42?model=emoji", {}, 422, "model", "unknown query parameter"),
    ("get", "/healthz?x=1", {}, 422, "x", "unknown query parameter"),
    # Bodies no JSON parser reads (FastAPI answered these 400 in another shape).
    ("post", "/generate", {"content": '{"seed": ' + "9" * 5000 + "}"}, 422, None, "too long"),
    ("post", "/generate", {"content": b'{"seed": "\xff\xfe"}'}, 422, None, "UTF-8"),
    ("post", "/generate", {"content": "[" * 20000 + "]" * 20000}, 422, None, "nested"),
    ("get", "/models/%27%22%3Cb%3E/1/seed/42", {}, 422, "model", "lower-case"),
]
ECHOES = ("<b>", "<script>", "'\"", "foo=", "99999", "٨", "unicorns", "Flags", "1.0", "<b>x")


@pytest.mark.parametrize(("method", "path", "kwargs", "status", "field", "words"), BAD_REQUESTS)
async def test_bad_requests_get_a_clear_4xx_without_echoing_input(
    client, method: str, path: str, kwargs: dict, status: int, field: str | None, words: str
) -> None:
    if "content" in kwargs:
        kwargs = {**kwargs, "headers": {"content-type": "application/json"}}
    r = await getattr(client, method)(path, **kwargs)
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"detail", "field"} and body["field"] == field
    assert words in body["detail"]
    assert "Traceback" not in r.text and "/work" not in r.text and "input" not in body
    assert not [echo for echo in ECHOES if echo in body["detail"]], body["detail"]
    assert r.headers["x-content-type-options"] == "nosniff"


async def test_huge_bodies_get_413_by_length_and_when_chunked(client) -> None:
    big = json.dumps({"latent": [0.0] * 40000}).encode()
    r = await client.post("/generate", content=big, headers={"content-type": "application/json"})
    assert r.status_code == 413 and "bytes" in r.json()["detail"]

    async def chunks():
        for start in range(0, len(big), 4096):
            yield big[start : start + 4096]

    r = await client.post(
        "/generate", content=chunks(), headers={"content-type": "application/json"}
    )
    assert r.status_code == 413


async def test_overload_is_answered_with_503_and_retry_after(settings) -> None:
    tight = settings.model_copy(update={"queue_size": 1, "max_batch_size": 1})
    async with Running(tight) as r:
        responses = await asyncio.gather(
            *(r.client.post("/generate", json={"seed": s, "size": 20}) for s in range(40))
        )
        codes = [x.status_code for x in responses]
        assert 503 in codes and 200 in codes and set(codes) <= {200, 503}
        refused = responses[codes.index(503)]
        assert refused.headers["retry-after"] == "1" and "overloaded" in refused.json()["detail"]
        text = (await r.client.get("/metrics")).text
        assert metric(text, "dne_rejections_total", reason="queue_full") >= 1


@pytest.mark.parametrize(
    ("query", "location"),
    [
        ("size=32&category=flags&truncation=0.50", "?category=flags&truncation=0.5&size=32"),
        ("truncation=1&size=16", ""),  # defaults (ψ = 1, the model's own size) left out
        ("truncation=1e-1", "?truncation=0.1"),
        ("category=flags&model=emoji", "?category=flags"),
    ],
)
async def test_seed_link_redirect_is_built_from_parsed_values_in_one_order(
    client, query: str, location: str
) -> None:
    r = await client.get(f"/seed/42?{query}")
    assert r.status_code == 302 and r.headers["location"] == "/models/emoji/1/seed/42" + location


async def test_models_are_listed_without_machine_paths_and_their_sample_grids_served(
    settings, tmp_path
) -> None:
    root = tmp_path / "store"
    shutil.copytree(settings.model_store, root)
    grid = Image.new("RGBA", (24, 24), (200, 30, 30, 255))
    command = (
        "python -m training train --data /root/.cache/dne/data/emoji.dne.gz --run-dir ~/runs/x"
    )
    credits = ["Twemoji, CC-BY 4.0 (https://creativecommons.org/licenses/by/4.0/)"]
    ModelStore(root).save(
        tiny_emoji(1),
        name="emoji",
        sample_grid=grid,
        class_names=CLASSES,
        class_slugs=SLUGS,
        credits=credits,
        training=TrainingInfo(command=command, recipe={"data": "/home/me/emoji.dne.gz"}),
    )
    async with Running(settings.model_copy(update={"model_store": root})) as r:
        listed = {(m["name"], m["version"]): m for m in (await r.client.get("/models")).json()}
        v2 = listed[("emoji", 2)]
        assert v2["training"]["command"] == (
            "python -m training train --data emoji.dne.gz --run-dir x"
        )
        assert v2["training"]["recipe"]["data"] == "emoji.dne.gz" and v2["credits"] == credits
        assert not re.search(r"(/root|/home|~)/", json.dumps(list(listed.values())))
        assert v2["sample_grid_url"] == "/models/emoji/2/samples.png"
        assert listed[("plain", 1)]["sample_grid_url"] is None
        png = await r.client.get(v2["sample_grid_url"])
        assert png.status_code == 200 and png.headers["content-type"] == "image/png"
        assert png.content == (root / "emoji" / "2" / "samples.png").read_bytes()
        assert "immutable" in png.headers["cache-control"]
        assert png.headers["x-content-type-options"] == "nosniff"
        missing = await r.client.get("/models/plain/1/samples.png")
        assert missing.status_code == 404 and missing.json()["field"] == "model"
    # The stored manifest keeps its provenance: only what is served is cut.
    assert "/root/.cache" in (root / "emoji" / "2" / "manifest.json").read_text()


def test_the_shipped_manifests_serve_no_machine_paths() -> None:
    store = ModelStore(DEFAULT_ROOT)
    for m in store.manifests("generator"):
        shown = json.dumps(public_manifest(store, m, served=True))
        assert not re.search(r"(/root|/home|/tmp|/work)/", shown), m.ref
    emoji = public_manifest(store, store.manifest("emoji", 1), served=True)
    assert emoji["sample_grid_url"] == "/models/emoji/1/samples.png"
    assert "--data emoji.dne.gz" in emoji["training"]["command"]
