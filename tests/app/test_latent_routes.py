"""POST /interpolate, POST /arithmetic, GET /grid: pictures, limits, errors; HEAD on GETs."""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import pytest
import schemathesis
from PIL import Image, ImageSequence

from .conftest import Running
from .test_api import metric, pixels

RES = 16  # the test model's resolution


def frames_of(data: bytes) -> list[np.ndarray]:
    return [
        np.asarray(f.convert("RGBA")).astype(int)
        for f in ImageSequence.Iterator(Image.open(io.BytesIO(data)))
    ]


def strip_frames(data: bytes, size: int = RES) -> list[np.ndarray]:
    strip = pixels(data)
    return [strip[:, i : i + size] for i in range(0, strip.shape[1], size)]


async def generated(client, **body: Any) -> np.ndarray:
    r = await client.post("/generate", json=body)
    assert r.status_code == 200, r.text
    return pixels(r.content)


# --- /interpolate ----------------------------------------------------------------------


async def test_interpolation_runs_from_one_image_to_the_other_in_one_batch(client) -> None:
    before = (await client.get("/metrics")).text
    body = {"from": {"seed": 1}, "to": {"seed": 2}, "steps": 7, "format": "png"}
    r = await client.post("/interpolate", json=body)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "image/png" and r.headers["x-frames"] == "7"
    # One category for the whole animation: the first point's (seed 1 → animals-nature).
    assert r.headers["x-category"] == "animals-nature"
    frames = strip_frames(r.content)
    assert len(frames) == 7
    first = await generated(client, seed=1, category="animals-nature")
    last = await generated(client, seed=2, category="animals-nature")
    assert np.abs(frames[0] - first).max() <= 1 and np.abs(frames[-1] - last).max() <= 1
    assert len({f.tobytes() for f in frames}) == 7  # it moves
    after = (await client.get("/metrics")).text
    painted = "dne_images_generated_total"
    assert metric(after, painted) - metric(before, painted) == 7 + 2  # + the two /generate
    batches = "dne_batch_size_count"
    assert metric(after, batches) - metric(before, batches) == 1 + 2  # the 7 frames: one batch


@pytest.mark.parametrize(("fmt", "mime"), [("gif", "image/gif"), ("webp", "image/webp")])
async def test_interpolation_animates_in_gif_and_webp(client, fmt: str, mime: str) -> None:
    body = {"from": {"seed": 3}, "to": {"latent": [0.5] * 16}, "steps": 4, "format": fmt}
    r = await client.post("/interpolate", json={**body, "bounce": True, "fps": 20})
    assert r.status_code == 200 and r.headers["content-type"] == mime
    image = Image.open(io.BytesIO(r.content))
    assert image.format == fmt.upper() and image.n_frames == 6 and image.info["loop"] == 0
    assert len(frames_of(r.content)) == 6


async def test_interpolation_is_cached_and_named_by_its_body(client) -> None:
    body = {"from": {"seed": 5}, "to": {"seed": 6}, "steps": 3, "category": "flags"}
    first = await client.post("/interpolate", json=body)
    again = await client.post("/interpolate", json={**body, "from": {"seed": "5"}})
    assert first.headers["x-category"] == "flags"
    assert (first.headers["x-cache"], again.headers["x-cache"]) == ("miss", "hit")
    assert first.content == again.content and first.headers["etag"] == again.headers["etag"]
    assert "max-age" in first.headers["cache-control"]
    for change in ({"steps": 4}, {"mode": "lerp"}, {"fps": 6}, {"bounce": True}):
        other = await client.post("/interpolate", json={**body, **change})
        assert other.headers["x-cache"] == "miss" and other.headers["etag"] != first.headers["etag"]


async def test_the_frames_count_against_the_queue_limit(settings) -> None:
    async with Running(settings.model_copy(update={"queue_size": 4})) as r:
        body = {"from": {"seed": 1}, "to": {"seed": 2}}
        refused = await r.client.post("/interpolate", json={**body, "steps": 5})
        assert refused.status_code == 503 and refused.headers["retry-after"]
        assert "this needs 5" in refused.json()["detail"]
        assert (await r.client.post("/interpolate", json={**body, "steps": 4})).status_code == 200


# --- /arithmetic -----------------------------------------------------------------------


async def test_arithmetic_of_one_seed_is_that_seed(client) -> None:
    r = await client.post("/arithmetic", json={"terms": [{"seed": 8, "weight": 2.5}]})
    assert r.status_code == 200 and r.headers["etag"]
    # Rescaled by the weights' norm: 2.5·z / 2.5 is z itself, and its class is seed 8's.
    assert (
        r.headers["x-category"]
        == (await client.post("/generate", json={"seed": 8})).headers["x-category"]
    )
    assert np.abs(pixels(r.content) - await generated(client, seed=8)).max() <= 1


async def test_arithmetic_sums_rescale_and_are_cached(client) -> None:
    terms = [{"seed": 1}, {"seed": 2, "weight": -1}, {"latent": [0.25] * 16}]
    summed = await client.post("/arithmetic", json={"terms": terms, "category": "flags"})
    raw = await client.post(
        "/arithmetic", json={"terms": terms, "category": "flags", "rescale": False}
    )
    again = await client.post("/arithmetic", json={"terms": terms, "category": "flags"})
    assert [r.status_code for r in (summed, raw, again)] == [200] * 3
    assert summed.content != raw.content
    assert (again.headers["x-cache"], again.content) == ("hit", summed.content)
    for r in (summed, raw):
        assert r.headers["x-category"] == "flags"


# --- /grid -----------------------------------------------------------------------------


async def test_a_seeded_grid_is_the_seeds_images_in_rows(client) -> None:
    r = await client.get("/grid?n=5&seed=40&columns=3")
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    assert (r.headers["x-seed"], r.headers["x-tiles"]) == ("40", "5")
    assert "x-category" not in r.headers  # each tile has its seed's own
    image = pixels(r.content)
    assert image.shape == (2 * RES, 3 * RES, 4)
    for i, seed in enumerate(range(40, 45)):
        row, col = divmod(i, 3)
        tile = image[row * RES : (row + 1) * RES, col * RES : (col + 1) * RES]
        assert np.abs(tile - await generated(client, seed=seed)).max() <= 1
    assert Image.open(io.BytesIO(r.content)).text["Seed"] == "40 .. 44"


async def test_a_seeded_grid_has_an_etag_and_a_fresh_one_is_never_cached(client) -> None:
    seeded = await client.get("/grid?n=4&seed=7&category=flags&size=24")
    etag = seeded.headers["etag"]
    assert seeded.headers["x-category"] == "flags" and "max-age" in seeded.headers["cache-control"]
    again = await client.get(
        "/grid?n=4&seed=7&category=flags&size=24", headers={"If-None-Match": etag}
    )
    assert again.status_code == 304 and again.headers["etag"] == etag
    fresh = [await client.get("/grid?n=4") for _ in range(2)]
    assert [f.headers["cache-control"] for f in fresh] == ["no-store"] * 2
    assert "etag" not in fresh[0].headers and fresh[0].headers["x-cache"] == "miss"
    starts = [int(f.headers["x-seed"]) for f in fresh]
    assert starts[0] != starts[1] and all(0 <= s < 2**53 for s in starts)
    # A fresh grid's tiles are its seeds' images: the page can open any of them.
    tile = pixels(fresh[0].content)[:RES, :RES]
    assert np.abs(tile - await generated(client, seed=starts[0])).max() <= 1


# --- limits and errors -------------------------------------------------------------------

ENDS = {"from": {"seed": 1}, "to": {"seed": 2}}
BAD = [
    ("post", "/interpolate", {**ENDS, "steps": 1}, "steps", "2 .. 64"),
    ("post", "/interpolate", {**ENDS, "steps": 65}, "steps", "2 .. 64"),
    ("post", "/interpolate", {**ENDS, "steps": 4.0}, "steps", "integer"),
    ("post", "/interpolate", {**ENDS, "fps": 0}, "fps", "1 .. 50"),
    ("post", "/interpolate", {**ENDS, "format": "avi"}, "format", "gif"),
    ("post", "/interpolate", {**ENDS, "mode": "cubic"}, "mode", "slerp"),
    ("post", "/interpolate", {**ENDS, "bounce": 1}, "bounce", "true or false"),
    ("post", "/interpolate", {"to": {"seed": 2}}, "from", "required"),
    ("post", "/interpolate", {**ENDS, "to": {}}, "to", "exactly one"),
    ("post", "/interpolate", {**ENDS, "to": {"latent": [0.1] * 5}}, "latent", "16 numbers"),
    ("post", "/interpolate", {**ENDS, "size": 4}, "size", "8 .."),
    ("post", "/arithmetic", {"terms": []}, "terms", "at least 1"),
    ("post", "/arithmetic", {"terms": [{"seed": i} for i in range(9)]}, "terms", "at most 8"),
    ("post", "/arithmetic", {"terms": [{"seed": 1, "weight": 0}]}, "terms", "all zero"),
    ("post", "/arithmetic", {"terms": [{"seed": 1, "weight": 11}]}, "terms", "-10 .. 10"),
    (
        "post",
        "/arithmetic",
        {"terms": [{"latent": [9] * 16, "weight": 10}], "rescale": False},
        "terms",
        "rescale",
    ),
    (
        "post",
        "/arithmetic",
        {"terms": [{"seed": 1}], "model": "plain", "category": "flags"},
        "category",
        "no categories",
    ),
    ("get", "/grid?n=0", None, "n", "1 .. 64"),
    ("get", "/grid?n=65", None, "n", "1 .. 64"),
    ("get", "/grid?n=64&size=512", None, "size", "at most 2048"),
    ("get", "/grid?n=2&seed=18446744073709551615", None, "seed", "pass"),
    ("get", "/grid?n=2&rows=3", None, "rows", "unknown"),
]


@pytest.mark.parametrize(("method", "url", "body", "field", "says"), BAD)
async def test_bad_requests_get_a_422_naming_the_field(
    client, method, url, body, field, says
) -> None:
    r = await client.request(method.upper(), url, json=body)
    assert r.status_code == 422, r.text
    assert r.json()["field"] == field and says in r.json()["detail"], r.json()


async def test_unknown_models_are_404(client) -> None:
    for method, url, body in (
        ("POST", "/interpolate", {"from": {"seed": 1}, "to": {"seed": 2}, "model": "nope"}),
        ("POST", "/arithmetic", {"terms": [{"seed": 1}], "model": "nope"}),
        ("GET", "/grid?model=nope", None),
    ):
        r = await client.request(method, url, json=body)
        assert (r.status_code, r.json()["field"]) == (404, "model")


SCHEMA_CASES = [
    (
        "POST",
        "/interpolate",
        {},
        {"from": {"seed": 1}, "to": {"seed": 2}, "steps": 3, "format": "webp"},
    ),
    ("POST", "/interpolate", {}, {"from": {"seed": 1}, "to": {"seed": 2}, "steps": 99}),
    ("POST", "/arithmetic", {}, {"terms": [{"seed": 1}, {"seed": 2, "weight": -1}]}),
    ("GET", "/grid", {"n": 4, "seed": 3}, None),
    ("GET", "/grid", {"n": 400}, None),
]


@pytest.mark.parametrize(("method", "path", "query", "body"), SCHEMA_CASES)
async def test_real_responses_match_the_schema(running: Running, method, path, query, body) -> None:
    operation = schemathesis.openapi.from_dict(running.app.openapi())[path][method]
    parts: dict[str, Any] = {"query": query}
    if body is not None:
        parts |= {"body": body, "media_type": "application/json"}
    response = await running.client.request(method, path, params=query, json=body)
    operation.Case(**parts).validate_response(response)


# --- HEAD wherever GET is served ----------------------------------------------------------

PATH_VALUES = {"model": "emoji", "version": "1", "seed": "5", "name": "emoji"}


def routes_of(routes) -> list:
    """Every route, those of included routers too (FastAPI keeps them nested)."""
    found = []
    for route in routes:
        nested = getattr(route, "original_router", None)
        found += routes_of(nested.routes) if nested is not None else [route]
    return found


def get_urls(app) -> list[str]:
    return [
        route.path.format(**PATH_VALUES)
        for route in routes_of(app.routes)
        if "GET" in getattr(route, "methods", ()) and "{" not in route.path.format(**PATH_VALUES)
    ]


async def test_head_answers_like_get_without_a_body_on_every_get_route(running: Running) -> None:
    client = running.client
    urls = get_urls(running.app)
    assert {"/", "/random", "/grid", "/models", "/docs", "/redoc", "/openapi.json"} <= set(urls)
    for url in urls:
        get = await client.get(url)
        head = await client.head(url)
        assert head.status_code == get.status_code, url
        assert head.content == b"", url
        assert head.headers.get("content-type") == get.headers.get("content-type"), url
        if url not in ("/random", "/grid", "/metrics"):  # fresh images, moving counters
            assert head.headers["content-length"] == get.headers["content-length"], url
    assert (await client.head("/generate")).status_code == 405  # POST only
    text = (await client.get("/metrics")).text
    assert metric(text, "dne_requests_total", route="/grid", method="HEAD", status="200") == 1


# --- the paint command paints what the service serves ----------------------------------


async def test_the_paint_command_agrees_with_the_service(client, store_root, tmp_path) -> None:
    from model_store.cli import main

    def paint(*args: str) -> None:
        assert main(["--store", str(store_root), "paint", *args]) == 0

    paint("12", "--category", "flags", "--truncation", "0.5", "--out", str(tmp_path))
    served = await client.get("/models/emoji/1/seed/12?category=flags&truncation=0.5")
    with Image.open(tmp_path / "emoji-1-12.png") as offline:
        offline.load()
    assert offline.text == Image.open(io.BytesIO(served.content)).text
    assert np.abs(np.asarray(offline).astype(int) - pixels(served.content)).max() <= 1

    paint("30-35", "--grid", "--columns", "3", "--out", str(tmp_path / "grid.png"))
    grid = await client.get("/grid?n=6&seed=30&columns=3")
    with Image.open(tmp_path / "grid.png") as offline:
        assert np.abs(np.asarray(offline).astype(int) - pixels(grid.content)).max() <= 1

    paint("1", "2", "--interpolate", "--steps", "5", "--out", str(tmp_path / "morph.png"))
    body = {"from": {"seed": 1}, "to": {"seed": 2}, "steps": 5, "format": "png"}
    strip = await client.post("/interpolate", json=body)
    with Image.open(tmp_path / "morph.png") as offline:
        assert np.abs(np.asarray(offline).astype(int) - pixels(strip.content)).max() <= 1
