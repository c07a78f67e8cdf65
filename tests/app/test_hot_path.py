"""app/hot_path.py: /random and pinned seeds without a query string skip FastAPI's
dependency solving; what they answer must be what FastAPI's route answers."""

from __future__ import annotations

from app.hot_path import DEFAULTS, HotPath
from app.routes import image_options, model_options

from .conftest import Running
from .test_api import metric

SAME = ("content-type", "cache-control", "etag", "x-seed", "x-model", "x-model-version")


def taken(running: Running, path: str, **headers: str) -> bool:
    """Would the hot path answer this (rather than FastAPI)?"""
    hot = HotPath(lambda *a: None, running.app)
    scope = {"type": "http", "method": "GET", "path": path.split("?")[0],
             "query_string": path.partition("?")[2].encode(),
             "headers": [(k.encode(), v.encode()) for k, v in headers.items()]}  # fmt: skip
    return hot.endpoint(scope) is not None


async def test_the_hot_path_answers_as_fastapi_does(running: Running) -> None:
    client = running.client
    hot = "/models/emoji/1/seed/5"
    slow = hot + "?truncation=1"  # the same image, through FastAPI (a query string)
    assert taken(running, hot) and not taken(running, slow)
    a, b = await client.get(hot), await client.get(slow)
    assert a.status_code == b.status_code == 200 and a.content == b.content
    assert {h: a.headers.get(h) for h in SAME} == {h: b.headers.get(h) for h in SAME}
    etag = a.headers["etag"]
    assert (await client.get(hot, headers={"If-None-Match": etag})).status_code == 304
    r = await client.get("/random")
    assert r.status_code == 200 and r.headers["cache-control"] == "no-store"
    text = (await client.get("/metrics")).text
    template = "/models/{model}/{version}/seed/{seed}"
    assert metric(text, "dne_requests_total", route=template, method="GET", status="200") == 2
    assert metric(text, "dne_requests_total", route=template, method="GET", status="304") == 1
    assert metric(text, "dne_requests_total", route="/random", method="GET", status="200") == 1


async def test_what_does_not_parse_is_left_to_fastapi(running: Running) -> None:
    client = running.client
    for path, field in [
        ("/models/emoji/1/seed/05", "seed"),  # leading zero: not canonical
        ("/models/emoji/0/seed/5", "version"),
        ("/models/Emoji/1/seed/5", "model"),
    ]:
        assert not taken(running, path)
        r = await client.get(path)
        assert r.status_code == 422 and r.json()["field"] == field, (path, r.json())
    # Errors the endpoint raises are answered by the app's handlers, here too.
    assert taken(running, "/models/emoji/9/seed/5")
    r = await client.get("/models/emoji/9/seed/5")
    assert r.status_code == 404 and r.json()["field"] == "version"
    assert r.headers["x-content-type-options"] == "nosniff" and "x-request-id" in r.headers
    assert taken(running, "/models/emoji/1/seed/5", **{"if-none-match": '"a"'})


async def test_rate_limiting_goes_through_fastapi(settings) -> None:
    async with Running(
        settings.model_copy(update={"rate_limit_per_s": 1, "rate_limit_burst": 1})
    ) as r:
        assert not taken(r, "/random")
        assert (await r.client.get("/random")).status_code == 200
        assert (await r.client.get("/random")).status_code == 429


async def test_its_options_are_the_routes_defaults() -> None:
    """What the routes' option dependencies build for a request without a query."""
    assert await model_options(await image_options()) == DEFAULTS
    assert await image_options() == DEFAULTS
