"""Every error the service answers, mapped to HTTP in one place.

One shape: ``{"detail": "<message>", "field": "<name or null>"}``. Input values are never
echoed (FastAPI's default 422 handler echoes them, and turns NaN into a 500): a message
states the rule that was broken, and ``field`` names a field only when it is one the
service knows or a plain identifier. No traceback or server path reaches a client.
"""

from __future__ import annotations

import json
import logging
import re
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException

from app.batcher import Overloaded

log = logging.getLogger("app")
RETRY_AFTER_S = "1"
NOSNIFF = {"X-Content-Type-Options": "nosniff"}
# A field name from the request (an unknown JSON key, a query parameter) is named back
# only if it is a plain identifier: anything else would be echoing input.
PLAIN_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,39}", re.ASCII)


class ErrorBody(BaseModel):
    """The body of every error response."""

    detail: str
    field: str | None


class ApiError(Exception):
    def __init__(
        self,
        status: int,
        detail: str,
        field: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status, self.detail, self.field, self.headers = status, detail, field, headers


def error_response(
    status: int, detail: str, field: str | None = None, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(
        {"detail": detail, "field": field},
        status_code=status,
        headers={**NOSNIFF, **(headers or {})},
    )


def error_bytes(detail: str, field: str | None = None) -> bytes:
    """The same body, for answers written below the app (app/server.py)."""
    return json.dumps({"detail": detail, "field": field}).encode()


def plain_name(name: object) -> str | None:
    return name if isinstance(name, str) and PLAIN_NAME.fullmatch(name) else None


def describe_validation_error(error: dict[str, Any]) -> tuple[str, str | None]:
    """(message, field) for one pydantic error, without its input value."""
    loc = [part for part in error.get("loc", ()) if part not in ("body", "query", "path")]
    kind = error.get("type")
    if kind == "json_invalid":
        return "the request body is not valid JSON", None
    if kind == "model_attributes_type" and not loc:
        return "the request body must be a JSON object (Content-Type: application/json)", None
    names = [str(part) if isinstance(part, int) else plain_name(part) for part in loc]
    if None in names:
        names = [name or "(a field)" for name in names]
    field = plain_name(loc[0]) if loc else None
    where = ".".join(names) if names else "request body"  # type: ignore[arg-type]
    message = str(error.get("msg", "invalid value")).removeprefix("Value error, ")
    if kind == "extra_forbidden":
        message = "unknown field; not permitted here"
    return f"{where}: {message}", field


def unreadable_body(cause: BaseException | None) -> str:
    """Why a body could not even be parsed (FastAPI answers these with a bare 400)."""
    if isinstance(cause, RecursionError):
        return "the request body is not valid JSON here: nested too deeply"
    if isinstance(cause, UnicodeDecodeError):
        return "the request body is not valid JSON: not UTF-8"
    return "the request body is not valid JSON here: a number too long to read"


async def on_validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    message, field = describe_validation_error(exc.errors()[0])
    return error_response(422, message, field)


async def on_api_error(request: Request, exc: ApiError) -> JSONResponse:
    return error_response(exc.status, exc.detail, exc.field, exc.headers)


async def on_overloaded(request: Request, exc: Overloaded) -> JSONResponse:
    return error_response(503, f"overloaded: {exc}", headers={"Retry-After": RETRY_AFTER_S})


async def on_http_error(request: Request, exc: HTTPException) -> JSONResponse:
    if exc.status_code == 400 and exc.__cause__ is not None:
        # FastAPI's "There was an error parsing the body": a JSON parser that gave up
        # (a 5,000-digit number, invalid UTF-8, 20,000 levels deep). Bad input: 422.
        return error_response(422, unreadable_body(exc.__cause__))
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
