"""The page a person sees: ``/`` (a fresh image) and ``/view/{model}/{version}/{seed}`` (the
permanent link to one image, with Open Graph and Twitter card tags so a shared link
previews it). One template (static/page.html) and one script (static/page.js); the words
come from the served models' manifests, so the page is right for any X.
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from string import Template
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Query, Request
from fastapi import Path as PathParam
from fastapi.responses import HTMLResponse

from app.errors import ApiError
from app.inputs import Category, ModelName, SeedText, TruncationText, VersionText
from app.registry import ModelRegistry
from app.routes import ModelsDep, refuse_unknown_query
from app.specs import class_label
from model_store import Manifest, ModelNotFoundError

STATIC = Path(__file__).parent / "static"
# Every page of this service loads only from this service. The browser enforces it, so
# not even a bundled script can reach out: ReDoc's sidebar would fetch its logo from
# cdn.redoc.ly, and Swagger UI can call a validator. Inline scripts and styles are
# allowed: the doc pages start their bundles inline, and ReDoc styles itself inline.
CONTENT_SECURITY_POLICY = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data: blob:; "
    "style-src 'self' 'unsafe-inline'; script-src 'self' 'unsafe-inline'; "
    "connect-src 'self' blob:; worker-src 'self' blob:; font-src 'self' data:; "
    "object-src 'none'; base-uri 'self'"
}
PAGE = Template((STATIC / "page.html").read_text())
PREVIEW_SIZE = 512  # og:image edge in pixels (or DNE_MAX_SIZE, if smaller)

router = APIRouter(dependencies=[Depends(refuse_unknown_query)], include_in_schema=False)


def page_manifests(models: ModelRegistry) -> list[Manifest]:
    """The manifest of each model's served (default) version, the default model first.
    Read from the store, so the page renders while the models warm up."""
    settings, store = models.settings, models.store
    defaults = models.defaults()
    names = sorted({m.name for m in store.manifests("generator")})
    names.sort(key=lambda name: name != settings.model)
    manifests = []
    for name in names:
        wanted = settings.model_version if name == settings.model else "latest"
        manifests.append(store.manifest(name, defaults.get(name, wanted)))
    return manifests


def page_model(m: Manifest) -> dict[str, Any]:
    """What the script needs to know of a model, wording included."""
    return {
        "name": m.name,
        "version": m.version,
        "title": m.display_title,
        "noun": m.display_noun,
        "tagline": tagline(m),
        "about": about(m),
        "credits": m.credits,
        "classes": [
            {"slug": slug, "name": name}
            for slug, name in zip(m.class_slugs, m.class_names, strict=False)
        ],
        "resolution": m.resolution,
    }


def tagline(m: Manifest) -> str:
    return (
        f"Every {m.display_noun} on this page was painted a moment ago by a neural network "
        "(a GAN). None of them exists."
    )


def about(m: Manifest) -> str:
    return f"{m.description} ({m.name} version {m.version})".lstrip()


def base_url(request: Request) -> str:
    public = request.app.state.settings.public_url
    return (public or str(request.base_url)).rstrip("/")


def render(request: Request, models: ModelRegistry, m: Manifest, **page: Any) -> HTMLResponse:
    """The page for model ``m``; ``page`` overrides the generic title, image and config."""
    manifests = page_manifests(models)
    config = {
        "model": m.name,
        "models": [page_model(x) for x in manifests],
        "pinned": page.pop("pinned", None),
    }
    root = base_url(request)
    grid = f"/models/{m.name}/{m.version}/samples.png" if m.sample_grid else ""
    values = {
        "site": m.display_title,
        "title": m.display_title,
        "description": tagline(m),
        "tagline": tagline(m),
        "noun": m.display_noun,
        "url": root + "/",
        "image": root + grid if grid else "",
        "image_alt": f"{m.display_noun} painted by a GAN",
        "card": "summary_large_image",
        "about": about(m),
        **page,
    }
    escaped = {key: html.escape(str(value)) for key, value in values.items()}
    escaped["credits"] = "".join(f"<li>{html.escape(c)}</li>" for c in m.credits)
    # JSON inside <script>: "<" escaped, so no value can close the element.
    escaped["config"] = json.dumps(config).replace("<", "\\u003c")
    return HTMLResponse(PAGE.substitute(escaped), headers={"Cache-Control": "no-cache"})


@router.get("/")
async def home(request: Request, models: ModelsDep) -> HTMLResponse:
    settings = models.settings
    manifests = page_manifests(models)
    default = next((m for m in manifests if m.name == settings.model), None)
    if default is None:
        raise ApiError(503, "no model to show yet; GET /readyz says why")
    return render(request, models, default)


@router.get("/view/{model}/{version}/{seed}")
async def view(
    request: Request,
    models: ModelsDep,
    model: Annotated[ModelName, PathParam()],
    version: Annotated[VersionText, PathParam()],
    seed: Annotated[SeedText, PathParam()],
    category: Annotated[Category | None, Query()] = None,
    truncation: Annotated[TruncationText, Query()] = 1.0,
) -> HTMLResponse:
    """The permanent link to one image: the page, opening on it, with link-preview tags
    naming its pinned PNG."""
    try:
        m = models.store.manifest(model, version)
    except ModelNotFoundError:
        raise ApiError(
            404, f"no {model} version {version}; GET /models lists them", "model"
        ) from None
    label = class_label(m, category, seed)  # 422 for a category the model does not have
    slug = m.class_slugs[label] if label is not None and m.class_slugs else None
    root = base_url(request)
    size = min(PREVIEW_SIZE, models.settings.max_size)
    query: list[tuple[str, str]] = []
    if category is not None:
        query.append(("category", category))
    if truncation != 1.0:
        query.append(("truncation", repr(truncation)))
    image = f"/models/{m.name}/{m.version}/seed/{seed}?" + urlencode([*query, ("size", str(size))])
    page_url = f"/view/{m.name}/{m.version}/{seed}" + (f"?{urlencode(query)}" if query else "")
    kind = next((n for s, n in zip(m.class_slugs, m.class_names, strict=False) if s == slug), "")
    what = f"{m.display_noun} number {seed}" + (f" ({kind})" if kind else "")
    return render(
        request,
        models,
        m,
        title=f"{what} · {m.display_title}",
        description=f"{what[0].upper()}{what[1:]}: painted by {m.name} version "
        f"{m.version}; no one ever drew it. {tagline(m)}",
        url=root + page_url,
        image=root + image,
        image_alt=f"{what}, painted by a GAN",
        # The seed as a string: JavaScript numbers keep only 53 bits.
        pinned={"seed": str(seed), "category": category, "truncation": truncation},
    )
