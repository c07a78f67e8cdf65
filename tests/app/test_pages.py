"""The page's HTML: words from the manifest, the permalink page's link-preview tags, and
its errors. (tests/browser drives the page itself in Chromium.)"""

from __future__ import annotations

import html
import json
import re
from pathlib import Path

import pytest

from model_store import ModelStore

from .conftest import Running, build_store


def meta(page: str, key: str) -> str:
    match = re.search(rf'<meta (?:property|name)="{re.escape(key)}" content="([^"]*)"', page)
    assert match, key
    return html.unescape(match.group(1))


def config(page: str) -> dict:
    return json.loads(
        re.search(r'<script type="application/json" id="config">(.*?)</script>', page, re.S).group(
            1
        )
    )


async def test_the_page_takes_its_words_from_the_manifest(client) -> None:
    r = await client.get("/")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert "<title>This Emoji Does Not Exist</title>" in r.text
    assert "default-src 'self'" in r.headers["content-security-policy"]
    c = config(r.text)
    assert c["model"] == "emoji" and c["pinned"] is None
    names = [m["name"] for m in c["models"]]
    assert names == ["emoji", "plain"]  # the default first; both pickable
    emoji = c["models"][0]
    assert emoji["classes"][2] == {"slug": "flags", "name": "Flags"}
    assert emoji["tagline"].startswith("Every emoji on this page")
    assert meta(r.text, "og:url") == "http://test/"
    for asset in ("/static/page.js", "/static/page.css"):
        assert (await client.get(asset)).status_code == 200


async def test_the_permalink_page_previews_its_image(client) -> None:
    r = await client.get("/view/emoji/1/42?category=flags&truncation=0.5")
    assert r.status_code == 200
    image = meta(r.text, "og:image")
    assert image == "http://test/models/emoji/1/seed/42?category=flags&truncation=0.5&size=512"
    assert meta(r.text, "twitter:image") == image
    assert meta(r.text, "twitter:card") == "summary_large_image"
    assert meta(r.text, "og:url") == "http://test/view/emoji/1/42?category=flags&truncation=0.5"
    assert "42" in meta(r.text, "og:title") and "(Flags)" in meta(r.text, "og:title")
    assert config(r.text)["pinned"] == {"seed": "42", "category": "flags", "truncation": 0.5}
    preview = await client.get(image.removeprefix("http://test"))
    assert preview.status_code == 200 and preview.headers["content-type"] == "image/png"


@pytest.mark.parametrize(
    ("url", "status", "field"),
    [
        ("/view/emoji/9/42", 404, "model"),
        ("/view/unicorns/1/42", 404, "model"),
        ("/view/emoji/1/42?category=dragons", 422, "category"),
        ("/view/emoji/1/-3", 422, "seed"),
        ("/view/emoji/1/42?truncation=3", 422, "truncation"),
        ("/view/emoji/1/42?size=64", 422, "size"),
    ],
)
async def test_a_bad_permalink_says_what_is_wrong(client, url: str, status: int, field: str):
    r = await client.get(url)
    assert (r.status_code, r.json()["field"]) == (status, field)


async def test_manifest_text_is_escaped_and_a_public_url_is_used(tmp_path: Path, settings) -> None:
    root = tmp_path / "store"
    build_store(root)
    manifest = root / "emoji" / "1" / "manifest.json"
    data = json.loads(manifest.read_text())
    data["title"] = "This <b>Thing</b> Does Not Exist"
    data["description"] = '</script><script>alert("x")</script>'
    manifest.write_text(json.dumps(data))
    assert ModelStore(root).manifest("emoji").title.startswith("This <b>")
    update = {"model_store": root, "public_url": "https://things.example/"}
    async with Running(settings.model_copy(update=update)) as r:
        page = (await r.client.get("/view/emoji/1/7")).text
    assert "<b>Thing</b>" not in page and "&lt;b&gt;Thing&lt;/b&gt;" in page
    assert '<script>alert("x")' not in page
    assert config(page)["models"][0]["about"].startswith('</script><script>alert("x")')
    assert meta(page, "og:url") == "https://things.example/view/emoji/1/7"
