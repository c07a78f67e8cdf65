"""HTTP routes: thin; they validate, build an ImageSpec, ask the Painter, shape the response."""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse
from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic.functional_validators import BeforeValidator

from app.errors import ApiError, error_response
from app.painter import Painter
from app.registry import ModelRegistry
from app.service import ImageService
from app.specs import ImageOptions, ImageSpec, Specs, given_latent, seed_latent
from model_store import MAX_SEED

router = APIRouter()
PAGE = Path(__file__).parent / "static" / "index.html"
RANDOM_SEEDS = 2**53  # seeds /random hands out stay exact as JavaScript numbers
IMMUTABLE = "public, max-age=31536000, immutable"


def get_service(request: Request) -> ImageService:
    return request.app.state.service


def get_registry(request: Request) -> ModelRegistry:
    return get_service(request).registry


def get_painter(request: Request) -> Painter:
    return get_service(request).painter


def get_specs(request: Request) -> Specs:
    return get_service(request).specs


ModelsDep = Annotated[ModelRegistry, Depends(get_registry)]
SpecsDep = Annotated[Specs, Depends(get_specs)]
PainterDep = Annotated[Painter, Depends(get_painter)]


def parse_seed(value: Any) -> int:
    """An unsigned 64-bit integer, given as a JSON integer or a decimal string."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError("must be an integer or a decimal string")
    if isinstance(value, str):
        if not value.isascii() or not value.isdigit() or len(value) > 20:
            raise ValueError(f"must be a decimal integer 0 .. {MAX_SEED}")
        value = int(value)
    if not 0 <= value <= MAX_SEED:
        raise ValueError(f"must be in 0 .. {MAX_SEED} (unsigned 64-bit)")
    return value


Seed = Annotated[int, BeforeValidator(parse_seed)]
Truncation = Annotated[float, Field(ge=0, le=2, allow_inf_nan=False)]
Name = Annotated[str, Field(min_length=1, max_length=64)]


def image_options(
    model: Annotated[Name | None, Query(description="model name (default: DNE_MODEL)")] = None,
    category: Annotated[Name | None, Query(description="class slug or name")] = None,
    truncation: Annotated[Truncation, Query(description="ψ: 0 .. 2, 1 = off")] = 1.0,
    size: Annotated[int | None, Query(description="output edge in pixels")] = None,
) -> ImageOptions:
    return ImageOptions(model, category, truncation, size)


Options = Annotated[ImageOptions, Depends(image_options)]


class GenerateBody(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    seed: Seed | None = None
    latent: list[Annotated[float, Field(ge=-10, le=10, allow_inf_nan=False)]] | None = Field(
        None, max_length=4096
    )
    model: Name | None = None
    category: Name | None = None
    truncation: Truncation = 1.0
    size: int | None = None

    @model_validator(mode="after")
    def exactly_one_source(self) -> GenerateBody:
        if (self.seed is None) == (self.latent is None):
            raise ValueError("give exactly one of seed or latent")
        return self


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


@router.get("/random", response_class=Response, summary="a fresh image every call")
async def random_image(
    models: ModelsDep, paint: PainterDep, specs: SpecsDep, options: Options
) -> Response:
    seed = secrets.randbelow(RANDOM_SEEDS)
    served = models.default(options.model)
    spec = specs.image(served, options, seed_latent(served.manifest, seed))
    data, hit = await paint.png(spec, cached=False)
    return png_response(spec, data, hit, "no-store", **{"X-Seed": str(seed)})


@router.get("/seed/{seed}", summary="the shareable link: redirects to the pinned version")
async def seed_link(
    seed: str, request: Request, models: ModelsDep, specs: SpecsDep, options: Options
) -> Response:
    value = seed_from_path(seed)
    served = models.default(options.model)
    # Validated now: errors are answered here, not redirected.
    specs.image(served, options, seed_latent(served.manifest, value))
    m = served.manifest
    query = request.url.query
    location = f"/models/{m.name}/{m.version}/seed/{value}" + (f"?{query}" if query else "")
    return RedirectResponse(location, 302, headers={"Cache-Control": "public, max-age=60"})


@router.get("/models/{name}/{version}/seed/{seed}", summary="one seed of one model version")
async def pinned_image(
    name: Name,
    version: int,
    seed: str,
    request: Request,
    models: ModelsDep,
    paint: PainterDep,
    specs: SpecsDep,
    options: Options,
) -> Response:
    value = seed_from_path(seed)
    served = await models.pinned(name, version)
    spec = specs.image(served, options, seed_latent(served.manifest, value))
    headers = {"ETag": spec.etag, "Cache-Control": IMMUTABLE}
    if etag_matches(request.headers.get("if-none-match"), spec.etag):
        return Response(status_code=304, headers=headers)
    data, hit = await paint.png(spec, cached=True)
    return png_response(spec, data, hit, IMMUTABLE, **{"ETag": spec.etag, "X-Seed": str(value)})


def etag_matches(if_none_match: str | None, etag: str) -> bool:
    """RFC 9110 weak comparison: ``W/"x"`` matches ``"x"``; ``*`` matches anything."""
    if not if_none_match:
        return False
    tags = {tag.strip().removeprefix("W/") for tag in if_none_match.split(",")}
    return "*" in tags or etag.removeprefix("W/") in tags


@router.post("/generate", response_class=Response, summary="an image for a seed or a latent")
async def generate(
    body: GenerateBody, models: ModelsDep, paint: PainterDep, specs: SpecsDep
) -> Response:
    options = ImageOptions(body.model, body.category, body.truncation, body.size)
    served = models.default(body.model)
    m = served.manifest
    latent = seed_latent(m, body.seed) if body.seed is not None else given_latent(m, body.latent)
    spec = specs.image(served, options, latent)
    data, hit = await paint.png(spec, cached=True)
    extra = {"X-Seed": str(body.seed)} if body.seed is not None else {}
    return png_response(spec, data, hit, "public, max-age=86400", **extra)


def seed_from_path(seed: str) -> int:
    try:
        return parse_seed(seed)
    except ValueError as exc:
        raise ApiError(422, f"seed: {exc}", "seed") from None


@router.get("/models", summary="the stored generators and their manifests")
async def list_models(models: ModelsDep) -> list[dict[str, Any]]:
    served = {(s.manifest.name, s.manifest.version) for s in models.served()}
    return [
        {**m.model_dump(mode="json"), "served": (m.name, m.version) in served}
        for m in models.store.manifests("generator")
    ]


@router.get("/healthz", summary="the process is alive (503 once start-up has failed)")
async def healthz(models: ModelsDep) -> JSONResponse:
    if models.failure:
        # The details name server paths: they go to the log, not to clients.
        return error_response(503, "start-up failed; the service log says why")
    if not models.alive:
        return error_response(503, "a batcher has stopped; the service log says why")
    return JSONResponse({"status": "alive"})


@router.get("/readyz", summary="models loaded, warmed up, and no batch stuck")
async def readyz(models: ModelsDep) -> JSONResponse:
    if models.failure:
        return error_response(503, "start-up failed; the service log says why")
    if not models.ready:
        return error_response(503, "warming up", headers={"Retry-After": "1"})
    if problems := models.problems():
        return error_response(503, "; ".join(problems), headers={"Retry-After": "1"})
    return JSONResponse({"status": "ready", "models": models.defaults()})


@router.get("/metrics", summary="Prometheus exposition")
async def metrics(request: Request) -> Response:
    m = request.app.state.metrics
    return Response(m.render(), media_type=m.content_type)


@router.get("/", response_class=HTMLResponse, include_in_schema=False)
async def page() -> HTMLResponse:
    return HTMLResponse(PAGE.read_text())
