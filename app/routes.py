"""HTTP routes: thin; they parse (app/inputs.py), build an ImageSpec, ask the Painter, shape
the response, and declare every answer they can give (app/openapi.py)."""

from __future__ import annotations

import secrets
from dataclasses import replace
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Header, Query, Request, Response
from fastapi import Path as PathParam
from fastapi.dependencies.models import Dependant
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse
from fastapi.routing import APIRoute

from app.catalog import public_manifest, sample_grid_file
from app.errors import ApiError, error_response, plain_name
from app.inputs import (
    Category,
    GenerateBody,
    ModelName,
    SeedText,
    SizeText,
    TruncationText,
    VersionText,
)
from app.openapi import BINARY, error_responses, image_response
from app.painter import Painter
from app.pool import RANDOM_SEEDS, RandomPool
from app.registry import ModelRegistry
from app.service import ImageService
from app.specs import ImageOptions, ImageSpec, Specs, point_latent, seed_latent

IMMUTABLE = "public, max-age=31536000, immutable"
LATER = {"Retry-After": "60"}  # a 503 that waits for an operator, not for a queue


DECLARED: dict[int, frozenset[str]] = {}  # id of a route's Dependant → its query names
# Dependencies are ``async def``: FastAPI runs a plain ``def`` one in its thread pool, a
# thread hop each (measured: most of a cached request's time went to those hops).


def service_of(request: Request) -> ImageService:
    return request.app.state.service


async def get_registry(request: Request) -> ModelRegistry:
    return service_of(request).registry


async def get_painter(request: Request) -> Painter:
    return service_of(request).painter


async def get_specs(request: Request) -> Specs:
    return service_of(request).specs


async def get_pool(request: Request) -> RandomPool | None:
    return service_of(request).pool


async def rate_limited(request: Request) -> None:
    """429 with Retry-After for a client over its rate (when DNE_RATE_LIMIT_PER_S is set)."""
    limiter = service_of(request).limiter
    if limiter is None:
        return
    client = request.scope.get("dne.client") or (request.client.host if request.client else "")
    wait = await limiter.retry_after(client)
    if wait is not None:
        headers = {"Retry-After": str(wait)}
        raise ApiError(429, "too many requests from this client; slow down", None, headers)


GENERATION = [Depends(rate_limited)]  # every route that paints takes a token
ModelsDep = Annotated[ModelRegistry, Depends(get_registry)]
SpecsDep = Annotated[Specs, Depends(get_specs)]
PainterDep = Annotated[Painter, Depends(get_painter)]
PoolDep = Annotated[RandomPool | None, Depends(get_pool)]


def declared_query(dependant: Dependant) -> frozenset[str]:
    """The query parameters a route takes, its dependencies' included (worked out once
    per route: they are fixed once the app is built)."""
    known = DECLARED.get(id(dependant))
    if known is not None:
        return known
    names, stack = set(), [dependant]
    while stack:
        current = stack.pop()
        names.update(field.alias for field in current.query_params)
        stack.extend(current.dependencies)
    known = DECLARED[id(dependant)] = frozenset(names)
    return known


async def refuse_unknown_query(request: Request) -> None:
    """Every route refuses query parameters it does not take, and any given twice: an
    image has one URL, and a misspelt option should not pass for the default."""
    if not request.scope["query_string"]:
        return
    route = request.scope.get("route")
    allowed = declared_query(route.dependant) if isinstance(route, APIRoute) else frozenset()
    seen: set[str] = set()
    for name, _ in request.query_params.multi_items():
        field = plain_name(name)
        if name not in allowed:
            takes = ", ".join(sorted(allowed)) or "none"
            raise ApiError(
                422, f"{field or 'query'}: unknown query parameter (takes {takes})", field
            )
        if name in seen:
            raise ApiError(422, f"{name}: given more than once", name)
        seen.add(name)


router = APIRouter(dependencies=[Depends(refuse_unknown_query)], responses=error_responses(422))


async def image_options(
    category: Annotated[
        Category | None, Query(description="a class slug (conditional models)")
    ] = None,
    truncation: Annotated[TruncationText, Query(description="ψ: 0 .. 2, 1 = off")] = 1.0,
    size: Annotated[SizeText | None, Query(description="output edge in pixels")] = None,
) -> ImageOptions:
    return ImageOptions(None, category, truncation, size)


async def model_options(
    options: Annotated[ImageOptions, Depends(image_options)],
    model: Annotated[ModelName | None, Query(description="model name (default: DNE_MODEL)")] = None,
) -> ImageOptions:
    return replace(options, model=model)


Options = Annotated[ImageOptions, Depends(image_options)]
ModelOptions = Annotated[ImageOptions, Depends(model_options)]
SeedPath = Annotated[SeedText, PathParam(description="an unsigned 64-bit integer")]
IMAGE_HEADERS = {
    "X-Model": "the model's name",
    "X-Model-Version": "the model version that painted it",
    "X-Category": "the category's slug (conditional models)",
    "X-Cache": "hit or miss (pool: painted ahead for /random, DNE_RANDOM_POOL)",
}
SEED_HEADERS = {**IMAGE_HEADERS, "X-Seed": "the seed, in decimal"}


def png_response(spec: ImageSpec, data: bytes, hit: bool, cache_control: str, **extra: str):
    headers = {
        "Cache-Control": cache_control,
        "X-Model": spec.model.manifest.name,
        "X-Model-Version": str(spec.model.manifest.version),
        "X-Cache": "hit" if hit else "miss",
        **extra,
    }
    if spec.category_slug:
        headers["X-Category"] = spec.category_slug
    return Response(data, media_type="image/png", headers=headers)


@router.get(
    "/random",
    response_class=Response,
    summary="a fresh image every call",
    dependencies=GENERATION,
    responses={
        **image_response("a PNG, never cached", SEED_HEADERS),
        **error_responses(404, 429, 503),
    },
)
async def random_image(
    models: ModelsDep, paint: PainterDep, specs: SpecsDep, options: ModelOptions, pool: PoolDep
) -> Response:
    served = models.default(options.model)
    if pool is not None and (pooled := await pool.take(served, options)) is not None:
        spec = pooled.spec
        painted_ahead = {"X-Seed": str(spec.seed), "X-Cache": "pool"}
        return png_response(spec, pooled.data, False, "no-store", **painted_ahead)
    seed = secrets.randbelow(RANDOM_SEEDS)
    spec = specs.image(served, options, seed_latent(served.manifest, seed))
    data, hit = await paint.png(spec, cached=False)
    return png_response(spec, data, hit, "no-store", **{"X-Seed": str(seed)})


@router.get(
    "/seed/{seed}",
    response_class=RedirectResponse,
    status_code=302,
    summary="the shareable link: redirects to the pinned version",
    responses={
        302: {
            "description": "to `/models/{model}/{version}/seed/{seed}`, options in canonical form",
            "headers": {"Location": {"schema": {"type": "string"}}},
        },
        **error_responses(404, 503),
    },
)
async def seed_link(
    seed: SeedPath, models: ModelsDep, specs: SpecsDep, options: ModelOptions
) -> Response:
    served = models.default(options.model)
    # Validated now: errors are answered here, not redirected.
    spec = specs.image(served, options, seed_latent(served.manifest, seed))
    return RedirectResponse(
        pinned_url(spec, options, seed), 302, headers={"Cache-Control": "public, max-age=60"}
    )


def pinned_url(spec: ImageSpec, asked: ImageOptions, seed: int) -> str:
    """The pinned URL, built from parsed values in a fixed order, defaults left out: one
    image, one URL, whatever spelling the request used."""
    m = spec.model.manifest
    query = []
    if asked.category is not None:
        query.append(("category", spec.category_slug))
    if spec.psi != 1.0:
        query.append(("truncation", repr(spec.psi)))  # repr round-trips the float
    if spec.size != m.resolution:
        query.append(("size", str(spec.size)))
    url = f"/models/{m.name}/{m.version}/seed/{seed}"
    return f"{url}?{urlencode(query)}" if query else url


@router.get(
    "/models/{model}/{version}/seed/{seed}",
    response_class=Response,
    summary="one seed of one model version: immutable",
    dependencies=GENERATION,
    responses={
        **image_response(
            "a PNG; the same one for ever", {**SEED_HEADERS, "ETag": "names the image"}
        ),
        304: {
            "description": "If-None-Match named this image",
            "headers": {"ETag": {"schema": {"type": "string"}}},
        },
        **error_responses(404, 429, 503),
    },
)
async def pinned_image(
    model: Annotated[ModelName, PathParam(description="model name")],
    version: Annotated[VersionText, PathParam(description="model version")],
    seed: SeedPath,
    models: ModelsDep,
    paint: PainterDep,
    specs: SpecsDep,
    options: Options,
    if_none_match: Annotated[str | None, Header(description="ETags the client has")] = None,
) -> Response:
    served = await models.pinned(model, version)
    spec = specs.image(served, options, seed_latent(served.manifest, seed))
    headers = {"ETag": spec.etag, "Cache-Control": IMMUTABLE}
    if etag_matches(if_none_match, spec.etag):
        return Response(status_code=304, headers=headers)
    data, hit = await paint.png(spec, cached=True)
    return png_response(spec, data, hit, IMMUTABLE, **{"ETag": spec.etag, "X-Seed": str(seed)})


def etag_matches(if_none_match: str | None, etag: str) -> bool:
    """RFC 9110 weak comparison: ``W/"x"`` matches ``"x"``; ``*`` matches anything."""
    if not if_none_match:
        return False
    tags = {tag.strip().removeprefix("W/") for tag in if_none_match.split(",")}
    return "*" in tags or etag.removeprefix("W/") in tags


@router.post(
    "/generate",
    response_class=Response,
    summary="an image for a seed or a latent",
    dependencies=GENERATION,
    responses={
        **image_response("a PNG", IMAGE_HEADERS | {"X-Seed": "the seed, if one was given"}),
        **error_responses(404, 408, 413, 429, 503),
    },
)
async def generate(
    body: GenerateBody, models: ModelsDep, paint: PainterDep, specs: SpecsDep
) -> Response:
    options = ImageOptions(body.model, body.category, body.truncation, body.size)
    served = models.default(body.model)
    spec = specs.image(served, options, point_latent(served.manifest, body))
    data, hit = await paint.png(spec, cached=True)
    extra = {"X-Seed": str(body.seed)} if body.seed is not None else {}
    return png_response(spec, data, hit, "public, max-age=86400", **extra)


@router.get(
    "/models",
    summary="the stored generators and their manifests",
    description="Each version with `default` (what unpinned requests get) and `served` "
    "(loaded now; any stored version loads on its first pinned request).",
)
async def list_models(models: ModelsDep) -> list[dict[str, Any]]:
    served = {(s.manifest.name, s.manifest.version) for s in models.served()}
    defaults = models.defaults()
    return [
        public_manifest(models.store, m, (m.name, m.version) in served)
        | {"default": defaults.get(m.name) == m.version}
        for m in models.stored()
    ]


@router.get(
    "/models/{model}/{version}/samples.png",
    response_class=FileResponse,
    summary="the sample grid the model was stored with",
    responses={
        200: {"description": "a PNG", "content": {"image/png": BINARY}},
        **error_responses(404),
    },
)
async def sample_grid(
    model: Annotated[ModelName, PathParam(description="model name")],
    version: Annotated[VersionText, PathParam(description="model version")],
    models: ModelsDep,
) -> FileResponse:
    manifests = {(m.name, m.version): m for m in models.stored()}
    m = manifests.get((model, version))
    path = sample_grid_file(models.store, m) if m else None
    if path is None:
        raise ApiError(
            404, "no sample grid for that model version; GET /models lists them", "model"
        )
    return FileResponse(path, media_type="image/png", headers={"Cache-Control": IMMUTABLE})


@router.get(
    "/healthz",
    summary="the process is alive (503 once start-up has failed)",
    responses=error_responses(503),
)
async def healthz(models: ModelsDep) -> JSONResponse:
    if models.failure:
        # The details name server paths: they go to the log, not to clients.
        return error_response(503, "start-up failed; the service log says why", headers=LATER)
    if not models.alive:
        return error_response(503, "a batcher has stopped; the service log says why", headers=LATER)
    return JSONResponse({"status": "alive"})


@router.get(
    "/readyz",
    summary="models loaded, warmed up, and no batch stuck (in every worker process)",
    responses=error_responses(503),
)
async def readyz(request: Request, models: ModelsDep) -> JSONResponse:
    if (problem := service_of(request).readiness()) is not None:
        detail, retry_after = problem
        return error_response(503, detail, headers={"Retry-After": str(retry_after)})
    return JSONResponse({"status": "ready", "models": models.defaults()})


@router.get(
    "/metrics",
    summary="Prometheus exposition",
    response_class=Response,
    responses={
        200: {
            "description": "Prometheus text format",
            "content": {"text/plain": {"schema": {"type": "string"}}},
        }
    },
)
async def metrics(request: Request) -> Response:
    m = request.app.state.metrics
    return Response(m.render(), media_type=m.content_type)
