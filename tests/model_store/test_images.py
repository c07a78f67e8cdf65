"""Encoding: PNG text chunks, grids, animations."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image, ImageSequence

from model_store.images import encode_animation, encode_png, grid


def frames(n: int, size: int = 8) -> list[np.ndarray]:
    """Distinct RGBA frames: frame i is grey level 20·i, half transparent on the right."""
    out = []
    for i in range(n):
        f = np.full((size, size, 4), 20 * i, dtype=np.uint8)
        f[..., 3] = 255
        f[:, size // 2 :, 3] = 0
        out.append(f)
    return out


def test_png_carries_its_text_chunks() -> None:
    text = {"Seed": "42", "Model": "emoji/1", "Credit": "Noto Emoji © Google, Apache-2.0"}
    image = Image.open(io.BytesIO(encode_png(frames(1)[0], text=text)))
    assert image.text == text
    assert np.array_equal(np.asarray(image), frames(1)[0])


def test_grid_lays_tiles_out_row_by_row() -> None:
    tiles = frames(5)
    out = grid(tiles)  # ceil(sqrt(5)) = 3 columns, 2 rows
    assert out.shape == (16, 24, 4)
    assert np.array_equal(out[8:16, 8:16], tiles[4])
    assert out[8:16, 16:24].sum() == 0  # the missing sixth tile stays transparent
    assert grid(tiles, columns=5).shape == (8, 40, 4)


@pytest.mark.parametrize("fmt", ["gif", "webp"])
def test_animations_loop_through_every_frame(fmt: str) -> None:
    image = Image.open(io.BytesIO(encode_animation(frames(4), fmt, fps=10, bounce=True)))
    assert image.format == fmt.upper()
    assert image.n_frames == 6  # 0 1 2 3 2 1: back without repeating the ends
    assert image.info["loop"] == 0  # for ever
    greys, durations = [], []
    for frame in ImageSequence.Iterator(image):
        greys.append(np.asarray(frame.convert("RGBA"))[0, 0, 0])
        durations.append(frame.info["duration"])
    assert durations == [100] * 6
    assert list(np.argsort(greys[:4])) == [0, 1, 2, 3]


def test_png_strip_keeps_alpha_and_gif_composites_on_white() -> None:
    strip = Image.open(io.BytesIO(encode_animation(frames(3), "png", fps=5)))
    assert strip.size == (24, 8) and strip.mode == "RGBA"
    assert np.asarray(strip)[0, 7, 3] == 0
    gif = Image.open(io.BytesIO(encode_animation(frames(3), "gif", fps=5))).convert("RGB")
    assert tuple(np.asarray(gif)[0, 7]) == (255, 255, 255)


def test_unknown_animation_format_is_refused() -> None:
    with pytest.raises(ValueError, match="gif, webp, png"):
        encode_animation(frames(2), "avi", fps=5)
