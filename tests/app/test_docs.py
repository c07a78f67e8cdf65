"""/docs and /redoc need nothing from other hosts: every asset they name is served here.
(tests/browser renders them in Chromium with the network blocked.)"""

from __future__ import annotations

import re

import pytest


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
async def test_doc_pages_load_every_asset_from_the_app(client, page: str) -> None:
    r = await client.get(page)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assets = re.findall(r'(?:src|href)="([^"]+)"', r.text)
    assert any(a.endswith(".js") for a in assets), assets
    for asset in assets:
        assert asset.startswith("/") and not asset.startswith("//"), asset
        served = await client.get(asset)
        assert served.status_code == 200 and len(served.content) > 1000, asset
    assert "https://" not in r.text and "http://" not in r.text
    assert "/openapi.json" in r.text
