"""The two busiest requests, without FastAPI's per-request dependency solving.

``GET /random`` and ``GET /models/{model}/{version}/seed/{seed}`` with no query string
are most of the traffic, and for a cached seed FastAPI's routing and dependency solving
took most of the request (benchmarks/serving.md). For exactly those shapes this calls
the same endpoint functions (app/routes.py) with the same parsed values (app/inputs.py)
and answers errors with the same handlers (app/errors.py). Anything else (a query
string, a value that does not parse, a HEAD or POST, rate limiting on, the service not
built yet) goes to FastAPI as before, so there is one implementation of every answer.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable

from fastapi import FastAPI, Request, Response
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Receive, Scope, Send

from app.batcher import Overloaded
from app.errors import ApiError, on_api_error, on_http_error, on_overloaded
from app.inputs import parse_model_name, parse_seed, parse_version, unsigned_text
from app.pool import DEFAULTS
from app.routes import pinned_image, random_image, router

PINNED = re.compile(r"/models/([^/]+)/([^/]+)/seed/([^/]+)")
Endpoint = Callable[[], Awaitable[Response]]


class HotPath:
    """Innermost middleware: the app's exception handlers are inside FastAPI's router
    stack, so the errors of the endpoints called here are mapped here, by the same
    functions."""

    def __init__(self, app: ASGIApp, fastapi: FastAPI) -> None:
        self.app, self.fastapi = app, fastapi
        routes = {r.path: r for r in router.routes if isinstance(r, APIRoute)}
        self.random_route = routes["/random"]
        self.pinned_route = routes["/models/{model}/{version}/seed/{seed}"]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        endpoint = self.endpoint(scope) if scope["type"] == "http" else None
        if endpoint is None:
            await self.app(scope, receive, send)
            return
        try:
            response = await endpoint()
        except ApiError as exc:
            response = await on_api_error(Request(scope, receive), exc)
        except Overloaded as exc:
            response = await on_overloaded(Request(scope, receive), exc)
        except HTTPException as exc:
            response = await on_http_error(Request(scope, receive), exc)
        await response(scope, receive, send)

    def endpoint(self, scope: Scope) -> Endpoint | None:
        """The call that answers this request, or None: FastAPI answers it."""
        service = getattr(self.fastapi.state, "service", None)
        if scope["method"] != "GET" or scope["query_string"] or service is None:
            return None
        if service.limiter is not None:
            return None  # rate limiting is a dependency: FastAPI runs it
        models, paint, specs = service.registry, service.painter, service.specs
        path = scope["path"]
        if path == "/random":
            scope["route"] = self.random_route  # metrics and the access log label by it
            return lambda: random_image(models, paint, specs, DEFAULTS, service.pool)
        match = PINNED.fullmatch(path)
        if match is None:
            return None
        try:
            model = parse_model_name(match[1])
            version = parse_version(unsigned_text(match[2]))
            seed = parse_seed(match[3])
        except ValueError:
            return None  # FastAPI says which field and why
        if_none_match = None
        for name, value in scope["headers"]:
            if name == b"if-none-match":
                if if_none_match is not None:
                    return None  # given twice: as FastAPI would read it
                if_none_match = value.decode("latin-1")
        scope["route"] = self.pinned_route
        return lambda: pinned_image(
            model, version, seed, models, paint, specs, DEFAULTS, if_none_match
        )
