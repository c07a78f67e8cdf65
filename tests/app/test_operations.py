"""Operating the service: the access log and request IDs, rate limiting (per client, in
Redis shared by replicas), CORS, and clients that go away before their image."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

import httpx
import pytest

from app.settings import Settings

from .conftest import RedisServer, Running
from .test_api import metric

# --- the access log and request IDs --------------------------------------------------


def access_lines(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    return [json.loads(r.getMessage()) for r in caplog.records if r.name == "app.access"]


async def test_one_json_line_per_request_with_route_status_cache_and_batch(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="app.access")
    latent = [0.123456789] * 16
    await client.post("/generate", json={"latent": latent, "category": "flags"})
    await client.post("/generate", json={"latent": latent, "category": "flags"})
    await client.get("/seed/77?size=24")
    await client.get("/nowhere")
    lines = access_lines(caplog)
    assert [(x["route"], x["status"], x["cache"]) for x in lines] == [
        ("/generate", 200, "miss"),
        ("/generate", 200, "hit"),
        ("/seed/{seed}", 302, None),
        ("unmatched", 404, None),
    ]
    miss, hit = lines[0], lines[1]
    assert miss["batch_size"] == 1 and miss["model"] == "emoji/1" and hit["batch_size"] is None
    assert all(x["latency_ms"] >= 0 and x["client"] == "127.0.0.1" for x in lines)
    assert miss["bytes"] > 0 and len({x["request_id"] for x in lines}) == 4
    text = caplog.text
    assert "0.1234" not in text and "latent" not in text and "flags" not in text  # no bodies


async def test_request_id_is_taken_when_plain_and_made_otherwise(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="app.access")
    taken = await client.get("/healthz", headers={"X-Request-ID": "edge-42.a:b"})
    assert taken.headers["x-request-id"] == "edge-42.a:b"
    made = await client.get("/healthz", headers={"X-Request-ID": "<script>" + "x" * 300})
    assert len(made.headers["x-request-id"]) == 16 and "<" not in made.headers["x-request-id"]
    error = await client.get("/random?size=big")
    assert error.status_code == 422 and error.headers["x-request-id"]
    assert [x["request_id"] for x in access_lines(caplog)][:2] == [
        "edge-42.a:b",
        made.headers["x-request-id"],
    ]


# --- rate limiting -------------------------------------------------------------------


def limited(settings: Settings, **update: Any) -> Settings:
    return settings.model_copy(
        update={"rate_limit_per_s": 0.2, "rate_limit_burst": 3, "trusted_proxies": [], **update}
    )


async def test_rate_limiting_is_off_by_default(client: httpx.AsyncClient) -> None:
    codes = {(await client.get("/random?size=8")).status_code for _ in range(30)}
    assert codes == {200}


async def test_a_client_over_its_rate_gets_429_and_retry_after(settings: Settings) -> None:
    async with Running(limited(settings)) as r:
        answers = [await r.client.get("/models/emoji/1/seed/5") for _ in range(4)]
        assert [a.status_code for a in answers] == [200, 200, 200, 429]
        refused = answers[-1]
        assert refused.json() == {
            "detail": "too many requests from this client; slow down",
            "field": None,
        }
        assert 1 <= int(refused.headers["retry-after"]) <= 5  # one token per 5 s
        # Routes that paint nothing are not limited.
        assert (await r.client.get("/healthz")).status_code == 200
        assert (await r.client.get("/seed/5")).status_code == 302
        text = (await r.client.get("/metrics")).text
        assert metric(text, "dne_rate_limit_total", result="limited") == 1
        assert metric(text, "dne_rate_limit_total", result="allowed") == 3


async def test_x_forwarded_for_counts_only_from_trusted_proxies(settings: Settings) -> None:
    # httpx's ASGI transport connects from 127.0.0.1.
    async with Running(limited(settings, trusted_proxies=["127.0.0.0/8"])) as r:
        for _ in range(3):
            ok = await r.client.get("/random?size=8", headers={"X-Forwarded-For": "203.0.113.7"})
            assert ok.status_code == 200
        spoofed = {"X-Forwarded-For": "203.0.113.7, 127.0.0.5"}  # through two proxies
        assert (await r.client.get("/random?size=8", headers=spoofed)).status_code == 429
        other = {"X-Forwarded-For": "198.51.100.1"}
        assert (await r.client.get("/random?size=8", headers=other)).status_code == 200
    async with Running(limited(settings)) as r:  # no trusted proxies: the header is ignored
        codes = [
            (
                await r.client.get("/random?size=8", headers={"X-Forwarded-For": f"10.0.0.{i}"})
            ).status_code
            for i in range(4)
        ]
        assert codes == [200, 200, 200, 429]


async def test_replicas_share_one_bucket_in_redis(
    settings: Settings, redis_server: RedisServer
) -> None:
    shared = limited(settings, redis_url=redis_server.url)
    async with Running(shared) as one, Running(shared) as two:
        codes = []
        for replica in (one, two, one, two):
            codes.append((await replica.client.get("/random?size=8")).status_code)
        assert codes == [200, 200, 200, 429]
        assert (await one.client.get("/random?size=8")).status_code == 429
        redis_server.kill()  # limiting never takes the service down
        assert (await two.client.get("/random?size=8")).status_code == 200
        text = (await two.client.get("/metrics")).text
        assert metric(text, "dne_rate_limit_total", result="unchecked") == 1


def test_a_bad_trusted_proxy_is_a_settings_error() -> None:
    with pytest.raises(ValueError, match="not-an-ip"):
        Settings(trusted_proxies="10.0.0.0/8, not-an-ip")
    assert Settings(trusted_proxies="10.0.0.0/8, ::1").trusted_proxies == ["10.0.0.0/8", "::1"]


# --- CORS ----------------------------------------------------------------------------


async def test_cors_is_closed_unless_configured(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    origin = {"Origin": "https://elsewhere.example"}
    r = await client.get("/seed/1", headers=origin)
    assert not [h for h in r.headers if h.startswith("access-control-")]
    preflight = {**origin, "Access-Control-Request-Method": "POST"}
    r = await client.options("/generate", headers=preflight)
    assert not [h for h in r.headers if h.startswith("access-control-")]
    opened = settings.model_copy(update={"cors_origins": ["https://friend.example"]})
    async with Running(opened) as r:
        friend = {"Origin": "https://friend.example"}
        answer = await r.client.get("/models/emoji/1/seed/3", headers=friend)
        assert answer.headers["access-control-allow-origin"] == "https://friend.example"
        assert "X-Seed" in answer.headers["access-control-expose-headers"]
        ok = await r.client.options(
            "/generate", headers={**friend, "Access-Control-Request-Method": "POST"}
        )
        assert ok.status_code == 200 and "POST" in ok.headers["access-control-allow-methods"]
        stranger = await r.client.get("/models/emoji/1/seed/3", headers=origin)
        assert "access-control-allow-origin" not in stranger.headers


# --- a client that goes away ----------------------------------------------------------


async def call_and_leave(app: Any, path: str, leave_after_s: float) -> list[dict[str, Any]]:
    """Drive the ASGI app as a server would, for a client that disconnects after
    ``leave_after_s``: its request, then (later) ``http.disconnect``."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"test")],
        "client": ("127.0.0.1", 5000),
        "server": ("test", 80),
        "state": {},
    }
    messages = [{"type": "http.request", "body": b"", "more_body": False}]

    async def receive() -> dict[str, Any]:
        if messages:
            return messages.pop()
        await asyncio.sleep(leave_after_s)
        return {"type": "http.disconnect"}

    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await asyncio.wait_for(app(scope, receive, send), 10)
    return sent


async def test_a_client_that_leaves_takes_its_request_out_of_the_batch(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="app.access")
    # A batch waits a second to fill: long enough for its only client to leave first.
    slow = settings.model_copy(update={"max_delay_ms": 1000, "cache_max_bytes": 0})
    async with Running(slow) as r:
        painted = metric((await r.client.get("/metrics")).text, "dne_images_generated_total")
        started = time.monotonic()
        sent = await call_and_leave(r.app, "/models/emoji/1/seed/12", leave_after_s=0.1)
        assert sent == [] and time.monotonic() - started < 0.9  # cancelled, not served
        await asyncio.sleep(1.2)  # the batch window has closed: the request was dropped
        text = (await r.client.get("/metrics")).text
        assert metric(text, "dne_images_generated_total") == painted
        assert metric(text, "dne_rejections_total", reason="abandoned") == 1
        assert (
            metric(
                text,
                "dne_requests_total",
                route="/models/{model}/{version}/seed/{seed}",
                method="GET",
                status="499",
            )
            == 1
        )
        # A client that stays gets its image.
        assert (await r.client.get("/models/emoji/1/seed/12")).status_code == 200
    gone = [x for x in access_lines(caplog) if x["status"] == 499]
    assert len(gone) == 1 and gone[0]["route"] == "/models/{model}/{version}/seed/{seed}"


def test_the_access_log_is_written_without_a_flush_per_line_yet_soon() -> None:
    import logging
    import os
    import select

    from app.access import LineWriter

    read_end, write_end = os.pipe()
    stream = os.fdopen(write_end, "w", buffering=1 << 16)  # block-buffered, as a pipe is
    handler = LineWriter(stream)
    record = logging.LogRecord("app.access", logging.INFO, __file__, 1, "one line", None, None)
    handler.handle(record)
    assert select.select([read_end], [], [], 0)[0] == []  # not flushed by the write itself
    assert select.select([read_end], [], [], 5)[0] == [read_end]  # flushed soon all the same
    assert os.read(read_end, 100) == b"one line\n"
    stream.close()
    os.close(read_end)


async def test_made_up_methods_share_one_metric_label(client: httpx.AsyncClient) -> None:
    """A client chooses the method; a series per made-up method would grow for ever."""
    for method in ("FOO", "BAR123", "XYZZY"):
        assert (await client.request(method, "/random")).status_code == 405
    assert (await client.get("/healthz")).status_code == 200
    text = (await client.get("/metrics")).text
    assert metric(text, "dne_requests_total", route="/random", method="other", status="405") == 3
    assert metric(text, "dne_requests_total", route="/healthz", method="GET", status="200") == 1
    assert 'method="FOO"' not in text and 'method="XYZZY"' not in text
