"""The OpenAPI schema, told truthfully: the one error shape, every status a route can
answer, image media types, and the bounds that depend on settings.

Routes declare their answers with the builders here (``responses=error_responses(...)``
beside ``image_response(...)``); ``install_openapi`` fills in what only the settings know.
A test checks the schema against real responses, and schemathesis fuzzes the service
from it (tests/app/test_schema.py), so a route that answers something undeclared fails.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from app.errors import ErrorBody
from app.settings import Settings
from model_store import MAX_SEED

Responses = dict[int | str, dict[str, Any]]

RETRY_AFTER = {
    "Retry-After": {
        "description": "seconds to wait before trying again",
        "schema": {"type": "integer", "minimum": 0},
    }
}
REQUEST_ID = {
    "X-Request-ID": {
        "description": "the request's ID: the client's own if it sent a plain one",
        "schema": {"type": "string"},
    }
}
ERRORS: dict[int, str] = {
    404: "no such model or version (`field` says which), or no such resource",
    408: "the request body did not arrive in time (DNE_BODY_TIMEOUT_S); the connection closes",
    413: "the request body is larger than DNE_MAX_BODY_BYTES",
    422: "a field breaks its rule, or a query parameter is unknown; `field` names it",
    429: "too many requests from this client (when DNE_RATE_LIMIT_PER_S is set)",
    503: "overloaded, warming up or shutting down, or the model version is still loading or "
    "could not be loaded; try again after Retry-After seconds",
}
BINARY = {"schema": {"type": "string", "format": "binary"}}


def error_responses(*statuses: int) -> Responses:
    """``responses=`` entries for these error statuses, each with the one error body."""
    out: Responses = {}
    for status in statuses:
        out[status] = {"model": ErrorBody, "description": ERRORS[status]}
        if status in (429, 503):
            out[status]["headers"] = RETRY_AFTER
    return out


def image_response(
    description: str,
    headers: dict[str, str] | None = None,
    media_types: tuple[str, ...] = ("image/png",),
) -> Responses:
    """A 200 whose body is an image (a PNG unless told), with the headers it carries."""
    documented = {
        name: {"description": text, "schema": {"type": "string"}}
        for name, text in (headers or {}).items()
    }
    content = {media_type: BINARY for media_type in media_types}
    return {200: {"description": description, "content": content, "headers": documented}}


def install_openapi(app: FastAPI, settings: Settings) -> None:
    """Serve a schema whose bounds are this service's settings."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=app.routes,
            )
            for path in schema["paths"].values():
                for operation in path.values():
                    for parameter in operation.get("parameters", []):
                        parameter["schema"] = without_null(parameter["schema"])
            exact_bounds(schema)
            narrow_sizes(schema, settings.max_size)
            for path in schema["paths"].values():
                for operation in path.values():
                    for response in operation["responses"].values():
                        response.setdefault("headers", {}).update(REQUEST_ID)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def without_null(schema: dict[str, Any]) -> dict[str, Any]:
    """A parameter's schema without pydantic's ``null`` branch: an optional query
    parameter is left out, never given as null."""
    options = [o for o in schema.get("anyOf", []) if o.get("type") != "null"]
    if len(options) != 1:
        return schema
    rest = {k: v for k, v in schema.items() if k != "anyOf"}
    return {**options[0], **rest}


def exact_bounds(node: Any) -> None:
    """Integral bounds as JSON integers. FastAPI's OpenAPI model types bounds as floats,
    and no float holds the largest seed, 2^64 - 1: it comes back as 2^64."""
    if isinstance(node, list):
        for item in node:
            exact_bounds(item)
    if not isinstance(node, dict):
        return
    for key in ("minimum", "maximum"):
        bound = node.get(key)
        if isinstance(bound, float) and bound.is_integer():
            node[key] = MAX_SEED if bound == float(MAX_SEED) else int(bound)
    for value in node.values():
        exact_bounds(value)


def narrow_sizes(schema: dict[str, Any], max_size: int) -> None:
    """Every ``size`` (query parameter or body field) tops out at DNE_MAX_SIZE."""
    for path in schema["paths"].values():
        for operation in path.values():
            for parameter in operation.get("parameters", []):
                if parameter["name"] == "size":
                    parameter["schema"]["maximum"] = max_size
    for component in schema.get("components", {}).get("schemas", {}).values():
        size = component.get("properties", {}).get("size")
        if size is not None:
            for option in size.get("anyOf", [size]):
                if option.get("type") == "integer":
                    option["maximum"] = max_size
