"""Routes that play with the latent space: interpolations, weighted sums, grids of seeds.

Each goes the way of ``/generate``: the same input rules (app/inputs.py), limits, batcher,
cache, metrics and error shape. A picture made of N images (frames, tiles) counts as N
requests against the queue and runs as one batch where it fits (``Painter.group``).
"""

from __future__ import annotations

import math
import secrets
from dataclasses import replace
from typing import Annotated

import torch
from fastapi import APIRouter, Depends, Header, Query, Response

from app.errors import ApiError
from app.inputs import (
    LATENT_BOUND,
    MAX_GRID_EDGE,
    ArithmeticBody,
    InterpolateBody,
    SeedText,
    TilesText,
)
from app.openapi import error_responses, image_response
from app.painter import group_key
from app.routes import (
    GENERATION,
    IMAGE_HEADERS,
    RANDOM_SEEDS,
    ModelOptions,
    ModelsDep,
    PainterDep,
    SpecsDep,
    etag_matches,
    png_response,
    refuse_unknown_query,
)
from app.specs import ImageOptions, computed_latent, point_latent, seed_latent, weak_etag
from model_store import MAX_SEED
from model_store.images import ANIMATION_FORMATS, encode_animation, encode_png, grid
from model_store.latents import interpolate, weighted_sum

router = APIRouter(dependencies=[Depends(refuse_unknown_query)], responses=error_responses(422))
DETERMINISTIC = "public, max-age=86400"  # as /generate: same body, same picture
UNPINNED = "public, max-age=60"  # the default version may change: revalidate by ETag
ETAG = {"ETag": "names the picture: the same body gives the same one"}


def options_of(body: InterpolateBody | ArithmeticBody) -> ImageOptions:
    return ImageOptions(body.model, body.category, body.truncation, body.size)


@router.post(
    "/interpolate",
    response_class=Response,
    dependencies=GENERATION,
    summary="an animation from one point of the latent space to another",
    description=(
        "Frames from `from` to `to` (a seed or a latent each), both included, painted as "
        "one batch where they fit; each frame counts as a request against the queue. The "
        "category is the one given, else the first point's, for the whole animation."
    ),
    responses={
        **image_response(
            "an endlessly looping GIF or WebP, or a PNG strip of the frames",
            {**IMAGE_HEADERS, **ETAG, "X-Frames": "frames painted"},
            tuple(ANIMATION_FORMATS.values()),
        ),
        **error_responses(404, 408, 413, 429, 503),
    },
)
async def interpolate_route(
    body: InterpolateBody, models: ModelsDep, paint: PainterDep, specs: SpecsDep
) -> Response:
    served = models.default(body.model)
    m = served.manifest
    start, end = point_latent(m, body.start), point_latent(m, body.end)
    first = specs.image(served, options_of(body), start)
    last = replace(first, latent=end.z, source=end.source, seed=end.seed)
    path = interpolate(start.z, end.z, body.steps, body.mode)
    params = (body.steps, body.mode, body.format, body.fps, body.bounce)
    key = group_key("interpolate", [first, last], *params)  # names every frame
    frames = [replace(first, latent=z, source=f"{key}:{i}", seed=None) for i, z in enumerate(path)]

    def encode(pixels: list) -> bytes:
        return encode_animation(pixels, body.format, body.fps, body.bounce)

    data, hit = await paint.group(frames, encode, key)
    response = png_response(first, data, hit, DETERMINISTIC, ETag=weak_etag(key))
    response.headers["Content-Type"] = ANIMATION_FORMATS[body.format]
    response.headers["X-Frames"] = str(body.steps)
    return response


@router.post(
    "/arithmetic",
    response_class=Response,
    dependencies=GENERATION,
    summary="the image of a weighted sum of latents",
    description=(
        "Σ weight·latent over the terms (seeds or latents). With `rescale` (the default) "
        "the sum is divided by √(Σ weight²), which puts a sum of independent seeds back "
        "on the prior's scale; without it the sum is used as it is and must stay within "
        "the latent bounds. The category is the one given, else the first term's."
    ),
    responses={
        **image_response("a PNG", {**IMAGE_HEADERS, **ETAG}),
        **error_responses(404, 408, 413, 429, 503),
    },
)
async def arithmetic(
    body: ArithmeticBody, models: ModelsDep, paint: PainterDep, specs: SpecsDep
) -> Response:
    served = models.default(body.model)
    m = served.manifest
    points = [point_latent(m, term) for term in body.terms]
    weights = [term.weight for term in body.terms]
    if not any(weights):
        raise ApiError(422, "terms: the weights are all zero", "terms")
    z = weighted_sum(torch.stack([p.z for p in points]), weights, body.rescale)
    if z.abs().max() > LATENT_BOUND:
        raise ApiError(
            422,
            f"terms: the sum leaves -{LATENT_BOUND:g} .. {LATENT_BOUND:g}; rescale it "
            "or lower the weights",
            "terms",
        )
    latent = computed_latent(z, class_seed=points[0].class_seed)
    spec = specs.image(served, options_of(body), latent)
    data, hit = await paint.png(spec, cached=True)
    return png_response(spec, data, hit, DETERMINISTIC, ETag=spec.etag)


@router.get(
    "/grid",
    response_class=Response,
    dependencies=GENERATION,
    summary="n images in one PNG: seeds S .. S+n-1",
    description=(
        "With `seed`, the seeds `seed` .. `seed`+n−1: deterministic, cached, with an ETag "
        "(If-None-Match answers 304). Without it, a fresh run of seeds (`X-Seed` says where "
        "it starts), never cached. Tiles fill rows left to right; each tile is the image "
        "of its seed (`/seed/{seed}` with the same options). The whole grid is at most "
        f"{MAX_GRID_EDGE} pixels along either side."
    ),
    responses={
        **image_response(
            "a PNG grid",
            {**IMAGE_HEADERS, **ETAG, "X-Seed": "the first tile's seed", "X-Tiles": "n"},
        ),
        304: {
            "description": "If-None-Match named this grid",
            "headers": {"ETag": {"schema": {"type": "string"}}},
        },
        **error_responses(404, 429, 503),
    },
)
async def grid_route(
    models: ModelsDep,
    paint: PainterDep,
    specs: SpecsDep,
    options: ModelOptions,
    n: Annotated[TilesText, Query(description="how many images")] = 16,
    seed: Annotated[SeedText | None, Query(description="the first seed (else fresh)")] = None,
    columns: Annotated[TilesText | None, Query(description="default ⌈√n⌉")] = None,
    if_none_match: Annotated[str | None, Header(description="ETags the client has")] = None,
) -> Response:
    served = models.default(options.model)
    m = served.manifest
    fresh = seed is None
    first = secrets.randbelow(RANDOM_SEEDS - n) if seed is None else seed
    if first + n - 1 > MAX_SEED:
        raise ApiError(422, f"seed: the last tile's seed would pass {MAX_SEED}", "seed")
    tiles = [specs.image(served, options, seed_latent(m, s)) for s in range(first, first + n)]
    columns = min(columns or math.ceil(math.sqrt(n)), n)
    rows = math.ceil(n / columns)
    edge = tiles[0].size * max(columns, rows)
    if edge > MAX_GRID_EDGE:
        raise ApiError(
            422, f"size: the grid would be {edge} pixels; at most {MAX_GRID_EDGE}", "size"
        )
    key = None if fresh else group_key("grid", tiles, columns)
    headers = {"X-Seed": str(first), "X-Tiles": str(n)}
    if key is not None:
        headers["ETag"] = weak_etag(key)
        if etag_matches(if_none_match, headers["ETag"]):
            return Response(status_code=304, headers={**headers, "Cache-Control": UNPINNED})
    text = {**tiles[0].text, "Seed": f"{first} .. {first + n - 1}"}
    if options.category is None:
        text.pop("Category", None)  # each tile has its own

    def encode(pixels: list) -> bytes:
        return encode_png(grid(pixels, columns), paint.png_compress_level, text)

    data, hit = await paint.group(tiles, encode, key)
    response = png_response(tiles[0], data, hit, "no-store" if fresh else UNPINNED, **headers)
    if options.category is None and "X-Category" in response.headers:
        del response.headers["X-Category"]  # each tile has its own
    return response
