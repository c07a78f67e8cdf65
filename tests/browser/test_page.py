"""The page in a real browser: Debian's Chromium, headless, driven by Playwright, against a
real ``python -m app`` on localhost serving the shipped emoji model (and a tiny second
model, so the model picker shows). Every request to another host is refused and recorded;
each test checks that there was none.

Screenshots (desktop and phone) go to ``$DNE_SCREENSHOTS`` (default
``test-artifacts/screenshots``); ``DNE_SCREENSHOTS=docs/screenshots`` refreshes the ones the
README shows.
"""

from __future__ import annotations

import base64
import io
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import numpy as np
import pytest
import torch
from PIL import Image

from model_store import DEFAULT_ROOT, ModelStore, build_generator
from tests.app.conftest import free_port
from tests.app.test_process import start_app, wait_for

pytestmark = pytest.mark.slow

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = Path(os.environ.get("DNE_SCREENSHOTS", ROOT / "test-artifacts" / "screenshots"))
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shipped emoji v1, and a tiny unconditional grey model beside it."""
    root = tmp_path_factory.mktemp("store")
    shutil.copytree(DEFAULT_ROOT / "emoji", root / "emoji")
    torch.manual_seed(0)
    plain = build_generator("mlp", {"z_dim": 8, "channels": 1, "resolution": 8, "hidden": [16]})
    ModelStore(root).save(plain.eval(), name="plain", description="a tiny grey test model")
    return root


@pytest.fixture(scope="module")
def server(store: Path) -> Iterator[str]:
    port = free_port()
    process = start_app(store, port)  # its access log off: nobody reads the pipe
    try:
        wait_for(f"http://127.0.0.1:{port}/readyz", process, timeout_s=120)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.communicate(timeout=30)


class Offline:
    """Refuses every request that is not for the app, and remembers it."""

    def __init__(self, origin: str) -> None:
        self.origin = origin
        self.refused: list[str] = []

    def __call__(self, route) -> None:
        url = route.request.url
        if url.startswith(self.origin + "/") or url.startswith(("blob:", "data:")):
            route.continue_()
        else:
            self.refused.append(url)
            route.abort()


@pytest.fixture(scope="module")
def browser_context(server: str, tmp_path_factory: pytest.TempPathFactory):
    if not Path(CHROMIUM).exists():
        pytest.fail("chromium is not installed (scripts/test installs it)")
    from playwright.sync_api import sync_playwright

    offline = Offline(server)
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")),  # a fresh user-data-dir
            executable_path=CHROMIUM,
            args=CHROMIUM_ARGS,
            headless=True,
            viewport=DESKTOP,
            base_url=server,
        )
        context.route("**/*", offline)
        context.offline_guard = offline
        try:
            yield context
        finally:
            context.close()


@pytest.fixture
def page(browser_context):
    page = browser_context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    refused: list[str] = []  # by the Content-Security-Policy, before any request leaves
    page.on(
        "console",
        lambda m: refused.append(m.text) if "Content Security Policy" in m.text else None,
    )
    yield page
    page.close()
    assert browser_context.offline_guard.refused == [], "the page asked another host"
    assert errors == [], errors
    # The one known attempt: ReDoc's sidebar logo from cdn.redoc.ly, which the policy stops.
    assert all("cdn.redoc.ly" in text for text in refused), refused


# --- helpers --------------------------------------------------------------------------


def open_page(page, path: str = "/") -> str:
    """Go to ``path`` and wait until the image is shown and decoded; its seed."""
    page.goto(path)
    return wait_for_image(page)


def wait_for_image(page, previous: str | None = None) -> str:
    page.wait_for_function(
        """previous => {
            const image = document.getElementById('image');
            return image.complete && image.naturalWidth > 0 && image.src.startsWith('blob:')
                && image.dataset.seed && image.dataset.seed !== previous;
        }""",
        arg=previous,
    )
    page.eval_on_selector("#image", "image => image.decode()")
    return page.eval_on_selector("#image", "image => image.dataset.seed")


def image_bytes(page, selector: str = "#image") -> bytes:
    data = page.eval_on_selector(
        selector,
        """async image => {
            const buffer = await (await fetch(image.src)).arrayBuffer();
            let text = '';
            for (const byte of new Uint8Array(buffer)) text += String.fromCharCode(byte);
            return btoa(text);
        }""",
    )
    return base64.b64decode(data)


def screenshot(page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / name), full_page=True)


# --- the tests ------------------------------------------------------------------------


def test_the_page_shows_a_fresh_image_with_its_seed_and_words_from_the_manifest(page) -> None:
    seed = open_page(page)
    assert re.fullmatch(r"[0-9]+", seed)
    assert page.text_content("#seed") == seed
    assert page.title() == "This Emoji Does Not Exist"
    assert page.text_content("h1") == "This Emoji Does Not Exist"
    assert "Twemoji" in page.text_content("#credits")  # the manifest's credits
    size = page.eval_on_selector("#image", "i => [i.naturalWidth, i.naturalHeight]")
    assert size == [64, 64]  # the model's own pixels, upscaled crisply by the page
    shown = page.eval_on_selector("#image", "i => i.getBoundingClientRect().width")
    assert shown >= 256
    png = Image.open(io.BytesIO(image_bytes(page)))
    assert png.text["Seed"] == seed and png.text["Model"] == "emoji"
    assert png.text["Version"] == "1" and "Twemoji" in png.text["Credit"]
    download = page.get_attribute("#download", "download")
    assert download == f"emoji-1-{seed}.png"


def test_another_and_the_space_bar_change_the_seed(page) -> None:
    first = open_page(page)
    page.click("#another")
    second = wait_for_image(page, first)
    page.focus("body")
    page.keyboard.press("Space")
    third = wait_for_image(page, second)
    assert len({first, second, third}) == 3


def test_the_permalink_is_a_page_of_its_own_with_the_same_image_bytes(page) -> None:
    seed = open_page(page)
    shown = image_bytes(page)
    link = page.get_attribute("#permalink", "href")
    assert link.startswith(f"/view/emoji/1/{seed}")
    assert open_page(page, link) == seed
    assert image_bytes(page) == shown
    og = {
        name: page.get_attribute(f'meta[property="og:{name}"]', "content")
        for name in ("title", "image", "url")
    }
    assert seed in og["title"] and og["url"].endswith(link)
    assert page.get_attribute('meta[name="twitter:card"]', "content") == "summary_large_image"
    preview = httpx.get(og["image"])
    assert preview.status_code == 200 and preview.headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(preview.content)).size == (512, 512)


def test_the_category_picker_changes_the_request(page) -> None:
    open_page(page)
    with page.expect_response(lambda r: "/seed/" in r.url and "category=flags" in r.url) as answer:
        page.select_option("#category", "flags")
    assert answer.value.headers["x-category"] == "flags"
    wait_for_image(page)
    page.wait_for_function("() => document.getElementById('category-name').textContent === 'Flags'")


def test_the_creativity_slider_repaints_the_same_seed(page) -> None:
    seed = open_page(page)
    before = image_bytes(page)
    shown_src = page.eval_on_selector("#image", "image => image.src")
    page.focus("#creativity")  # keyboard reachable: Home moves it to 0
    with page.expect_response(lambda r: "/seed/" in r.url and "truncation=" in r.url) as answer:
        page.keyboard.press("Home")
    assert parse_qs(urlsplit(answer.value.url).query)["truncation"] == ["0"]
    page.wait_for_function(
        "before => document.getElementById('image').src !== before", arg=shown_src
    )
    assert wait_for_image(page) == seed
    after = image_bytes(page)
    assert after != before
    pixels = np.asarray(Image.open(io.BytesIO(after)))
    assert (pixels[..., 3] >= 128).mean() > 0.05  # still visible at psi = 0


def test_the_morph_plays(page) -> None:
    open_page(page)
    with page.expect_response(lambda r: r.url.endswith("/interpolate")) as answer:
        page.click("#morph")
    assert answer.value.headers["content-type"] == "image/webp"
    page.wait_for_function(
        "() => { const i = document.getElementById('morph-image');"
        " return i.complete && i.naturalWidth > 0; }"
    )
    assert Image.open(io.BytesIO(image_bytes(page, "#morph-image"))).n_frames == 46
    # Playing: what the browser shows of it changes over time (46 frames at 12 fps).
    shots = []
    for _ in range(3):
        shots.append(page.locator("#morph-image").screenshot())
        page.wait_for_timeout(350)
    assert len(set(shots)) > 1


def test_arithmetic_shows_the_terms_and_their_sum(page) -> None:
    open_page(page)
    page.wait_for_function(
        "() => { const i = document.getElementById('sum-image');"
        " return i.complete && i.naturalWidth > 0; }"
    )
    for term in ("a", "b", "c"):
        page.wait_for_function(
            f"() => document.getElementById('term-{term}-image').naturalWidth > 0"
        )
    page.fill("#term-c", "")
    with page.expect_response(lambda r: r.url.endswith("/arithmetic")) as answer:
        page.click("#sum-form button[type=submit]")
    assert answer.value.status == 200


def test_the_grid_goes_on_and_a_tile_opens_its_seed(page) -> None:
    open_page(page)
    page.wait_for_function("() => document.querySelectorAll('#grid button').length >= 8")
    tiles = page.eval_on_selector_all("#grid button", "tiles => tiles.length")
    page.click("#grid-more")
    page.wait_for_function(f"() => document.querySelectorAll('#grid button').length >= {tiles + 8}")
    seed = page.get_attribute("#grid button >> nth=3", "data-seed")
    page.click("#grid button >> nth=3")
    page.wait_for_function(f"() => document.getElementById('image').dataset.seed === '{seed}'")


def test_the_model_picker_switches_models(page) -> None:
    open_page(page)
    with page.expect_response(lambda r: "/models/plain/" in r.url) as answer:
        page.select_option("#model", "plain")
    assert answer.value.headers["x-model"] == "plain"
    wait_for_image(page)
    assert page.is_hidden("#category-label")  # an unconditional model has no categories
    assert page.text_content("h1") == "This Plain Does Not Exist"


def test_a_503_is_said_clearly_and_retried(page) -> None:
    answered = []

    def busy(route) -> None:
        if not answered:
            answered.append(route.request.url)
            route.fulfill(
                status=503,
                headers={"Retry-After": "1", "Content-Type": "application/json"},
                body='{"detail": "overloaded: 1024 requests are already waiting", "field": null}',
            )
        else:
            route.continue_()

    page.route("**/seed/*", busy)
    page.goto("/")
    page.wait_for_selector("#status:not([hidden])")
    said = page.text_content("#status")  # once: the retry clears it a second later
    assert "busy" in said and "Trying again in 1 s" in said
    wait_for_image(page)  # retried after Retry-After
    page.wait_for_selector("#status", state="hidden")


def test_every_control_is_reachable_by_keyboard(page) -> None:
    open_page(page)
    reached = set()
    for _ in range(40):
        page.keyboard.press("Tab")
        reached.add(page.evaluate("document.activeElement.id || document.activeElement.tagName"))
    wanted = {"another", "permalink", "download", "morph", "model", "category", "creativity"}
    assert wanted <= reached, wanted - reached


def test_screenshots_at_desktop_and_phone_sizes(page) -> None:
    open_page(page, "/view/emoji/1/2026?category=smileys-emotion")
    page.wait_for_function("() => document.querySelectorAll('#grid button').length >= 8")
    page.wait_for_function("() => document.getElementById('sum-image').naturalWidth > 0")
    screenshot(page, "page-desktop.png")
    page.set_viewport_size(PHONE)
    overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0, f"{overflow} px wider than a phone screen"
    screenshot(page, "page-phone.png")
    for name, viewport in (("page-desktop.png", DESKTOP), ("page-phone.png", PHONE)):
        with Image.open(SCREENSHOTS / name) as shot:
            assert shot.width == viewport["width"] and shot.height >= viewport["height"]


@pytest.mark.parametrize(
    ("path", "operation"), [("/docs", ".opblock"), ("/redoc", "[data-section-id]")]
)
def test_the_api_docs_render_their_operations_offline(page, path: str, operation: str) -> None:
    page.goto(path)
    page.wait_for_selector(operation)
    page.wait_for_function(
        "() => document.body.innerText.includes('/interpolate')"
        " && document.body.innerText.includes('/grid')"
    )
    assert page.locator(operation).count() >= 8
