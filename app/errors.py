"""Every error the service answers, mapped to HTTP in one place.

One shape: ``{"detail": "<message>", "field": "<name or null>"}``. Input values are never
echoed (FastAPI's default 422 handler echoes them, and turns NaN into a 500), and no
traceback or server path reaches a client.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from app.batcher import Overloaded

log = logging.getLogger("app")
RETRY_AFTER_S = "1"


class ApiError(Exception):
    def __init__(self, status: int, detail: str, field: str | None = None) -> None:
        super().__init__(detail)
        self.status, self.detail, self.field = status, detail, field


def error_response(
    status: int, detail: str, field: str | None = None, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse({"detail": detail, "field": field}, status_code=status, headers=headers)


def describe_validation_error(error: dict[str, Any]) -> tuple[str, str | None]:
    """(message, field) for one pydantic error, without its input value."""
    loc = [str(part) for part in error.get("loc", ()) if part not in ("body", "query", "path")]
    if error.get("type") == "json_invalid":
        return "the request body is not valid JSON", None
    if error.get("type") == "model_attributes_type" and not loc:
        return "the request body must be a JSON object (Content-Type: application/json)", None
    field = loc[0] if loc and not loc[0].isdigit() else None
    where = ".".join(loc) if loc else "request body"
    message = str(error.get("msg", "invalid value")).removeprefix("Value error, ")
    return f"{where}: {message}", field


async def on_validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    message, field = describe_validation_error(exc.errors()[0])
    return error_response(422, message, field)


async def on_api_error(request: Request, exc: ApiError) -> JSONResponse:
    return error_response(exc.status, exc.detail, exc.field)


async def on_overloaded(request: Request, exc: Overloaded) -> JSONResponse:
    return error_response(503, f"overloaded: {exc}", headers={"Retry-After": RETRY_AFTER_S})


async def on_http_error(request: Request, exc: HTTPException) -> JSONResponse:
    return error_response(exc.status_code, str(exc.detail), headers=exc.headers)


async def on_unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error on %s", request.url.path)
    return error_response(500, "internal error; it has been logged")


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, on_validation_error)
    app.add_exception_handler(ApiError, on_api_error)
    app.add_exception_handler(Overloaded, on_overloaded)
    app.add_exception_handler(HTTPException, on_http_error)
    app.add_exception_handler(Exception, on_unexpected)
