"""The OpenAPI schema tells the truth: the error model, every status, media types, bounds;
real responses are checked against it with schemathesis."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import hypothesis
import pytest
import schemathesis
from schemathesis import Case
from schemathesis.checks import positive_data_acceptance
from schemathesis.config import SchemathesisConfig

from app.main import create_app
from app.settings import Settings

from .conftest import Running, free_port
from .test_process import start_app, wait_for

FUZZ_EXAMPLES = 50  # per operation (positive and negative mixed): bounded, ~1 min in CI

GENERATION = {
    ("/random", "get"),
    ("/generate", "post"),
    ("/models/{model}/{version}/seed/{seed}", "get"),
}


def operations(spec: dict[str, Any]):
    for path, methods in spec["paths"].items():
        for method, operation in methods.items():
            yield path, method, operation


async def test_schema_states_the_error_model_every_status_and_the_bounds(running: Running) -> None:
    spec = (await running.client.get("/openapi.json")).json()
    schemas = spec["components"]["schemas"]
    assert "HTTPValidationError" not in schemas and "ValidationError" not in schemas
    assert schemas["ErrorBody"]["required"] == ["detail", "field"]
    for path, method, operation in operations(spec):
        responses = operation["responses"]
        for status, response in responses.items():
            if status.startswith(("4", "5")):
                ref = response["content"]["application/json"]["schema"]["$ref"]
                assert ref == "#/components/schemas/ErrorBody", (path, status)
            if status in ("429", "503"):
                assert "Retry-After" in response["headers"], (path, status)
            assert "X-Request-ID" in response["headers"]
        assert "422" in responses, path  # unknown query parameters, on every route
        if (path, method) in GENERATION:
            assert {"404", "422", "429", "503"} <= set(responses), path
            assert "image/png" in responses["200"]["content"], path
    generate = spec["paths"]["/generate"]["post"]["responses"]
    assert {"408", "413"} <= set(generate)
    redirect = spec["paths"]["/seed/{seed}"]["get"]["responses"]
    assert "302" in redirect and "200" not in redirect and "Location" in redirect["302"]["headers"]
    pinned = spec["paths"]["/models/{model}/{version}/seed/{seed}"]["get"]
    assert "304" in pinned["responses"]
    params = {p["name"]: p["schema"] for p in pinned["parameters"]}
    assert (params["seed"]["type"], params["seed"]["minimum"]) == ("integer", 0)
    assert params["seed"]["maximum"] == 2**64 - 1
    assert params["version"]["minimum"] == 1 and params["size"]["maximum"] == 512
    assert params["category"]["pattern"] == "^[a-z0-9]+(?:-[a-z0-9]+)*$"
    query = {p["name"] for p in pinned["parameters"] if p["in"] == "query"}
    assert query == {"category", "truncation", "size"}  # the path names the model
    body = schemas["GenerateBody"]["properties"]
    assert body["size"]["anyOf"][0] == {"type": "integer", "minimum": 8, "maximum": 512}
    assert body["latent"]["anyOf"][0]["items"] == {"type": "number", "minimum": -10, "maximum": 10}
    seed_string = body["seed"]["anyOf"][0]["anyOf"][1]["pattern"]
    assert seed_string.startswith("^(0|[1-9][0-9]{0,18}|") and "18446744073709551615" in seed_string


async def test_a_narrower_max_size_is_the_bound_the_schema_states(settings) -> None:
    async with Running(settings.model_copy(update={"max_size": 64})) as r:
        spec = (await r.client.get("/openapi.json")).json()
    random_size = {p["name"]: p for p in spec["paths"]["/random"]["get"]["parameters"]}["size"]
    assert random_size["schema"]["maximum"] == 64


# (method, path as in the schema, path parameters, query, body or raw content)
REAL = [
    ("GET", "/random", {}, {"category": "flags", "size": 24}, None),
    ("GET", "/random", {}, {"model": "unicorns"}, None),
    ("GET", "/random", {}, {"size": 4}, None),
    ("GET", "/random", {}, {"colour": "red"}, None),
    ("GET", "/seed/{seed}", {"seed": 5}, {"truncation": 0.5}, None),
    ("GET", "/seed/{seed}", {"seed": "-5"}, {}, None),
    (
        "GET",
        "/models/{model}/{version}/seed/{seed}",
        {"model": "emoji", "version": 1, "seed": 5},
        {},
        None,
    ),
    (
        "GET",
        "/models/{model}/{version}/seed/{seed}",
        {"model": "emoji", "version": 9, "seed": 5},
        {},
        None,
    ),
    (
        "GET",
        "/models/{model}/{version}/seed/{seed}",
        {"model": "Emoji", "version": 1, "seed": 5},
        {},
        None,
    ),
    ("POST", "/generate", {}, {}, {"seed": "18446744073709551615", "size": 32}),
    ("POST", "/generate", {}, {}, {"latent": [0.5] * 8, "model": "plain"}),
    ("POST", "/generate", {}, {}, {"latent": [0.5] * 7, "model": "plain"}),
    ("POST", "/generate", {}, {}, {"seed": 1, "size": "32"}),
    ("POST", "/generate", {}, {}, {"seed": 1, "model": "nope"}),
    ("POST", "/generate", {}, {}, '{"latent": [' + ", ".join(["0.0"] * 40000) + "]}"),
    ("POST", "/generate", {}, {}, "[" * 20000),
    ("GET", "/models", {}, {}, None),
    ("GET", "/models/{model}/{version}/samples.png", {"model": "emoji", "version": 1}, {}, None),
    ("GET", "/healthz", {}, {}, None),
    ("GET", "/readyz", {}, {}, None),
    ("GET", "/metrics", {}, {}, None),
]


@pytest.mark.parametrize(("method", "path", "path_parameters", "query", "body"), REAL)
async def test_real_responses_match_the_schema(
    running: Running, method: str, path: str, path_parameters: dict, query: dict, body: Any
) -> None:
    spec = running.app.openapi()
    operation = schemathesis.openapi.from_dict(spec)[path][method]
    parts: dict[str, Any] = {"path_parameters": path_parameters, "query": query}
    if body is not None:
        parts |= {"body": body, "media_type": "application/json"}
    case = operation.Case(**parts)
    url = path.format(**path_parameters)
    kwargs: dict[str, Any] = {"params": query}
    if isinstance(body, str):
        kwargs |= {"content": body, "headers": {"content-type": "application/json"}}
    elif body is not None:
        kwargs["json"] = body
    response = await running.client.request(method, url, **kwargs)
    assert response.status_code < 500
    case.validate_response(response)  # status documented, media type, body schema, headers


# --- fuzzing from the schema -----------------------------------------------------------


# The schema as `python -m app` serves it with default settings, built here because
# schemathesis' lazy loading from a fixture does not work with pytest 9.2.
# Input the schema forbids must be refused with a 4xx the schema declares: a body over
# DNE_MAX_BODY_BYTES is one (413), though no JSON Schema keyword can state a byte limit.
REFUSED = [400, 404, 405, 408, 413, 422, 429]
SERVED_SCHEMA = schemathesis.openapi.from_dict(
    create_app(Settings(max_size=512)).openapi(),
    config=SchemathesisConfig.from_dict(
        {"checks": {"negative_data_rejection": {"expected-statuses": REFUSED}}}
    ),
)


@pytest.fixture(scope="module")
def served_url(store_root: Path) -> Iterator[str]:
    port = free_port()
    process = start_app(store_root, port, DNE_MAX_SIZE="512")
    try:
        wait_for(f"http://127.0.0.1:{port}/readyz", process)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.communicate(timeout=20)


@pytest.mark.slow
@SERVED_SCHEMA.parametrize()
@hypothesis.settings(
    max_examples=FUZZ_EXAMPLES,
    deadline=None,
    derandomize=True,  # the same examples on every run: CI stays reproducible
    database=None,
    suppress_health_check=list(hypothesis.HealthCheck),
)
def test_fuzzing_from_the_schema_finds_no_5xx_and_no_undeclared_answer(
    case: Case, served_url: str
) -> None:
    """Positive and negative examples for every operation against ``python -m app``: no
    5xx, every status, media type, header and body as the schema says, and input the
    schema forbids refused. Not checked: that all input the schema allows is accepted;
    some rules depend on the model (a latent's length, its categories), which one
    schema for every model cannot state."""
    case.call_and_validate(base_url=served_url, excluded_checks=[positive_data_acceptance])
