"""PNG encoding of generator output."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

MODES = {1: "L", 3: "RGB", 4: "RGBA"}


def encode_png(pixels: np.ndarray, compress_level: int = 1) -> bytes:
    """[H, W, C] uint8 → PNG bytes. Pillow releases the GIL while compressing."""
    channels = pixels.shape[-1]
    image = Image.fromarray(pixels[..., 0] if channels == 1 else pixels, MODES[channels])
    out = io.BytesIO()
    image.save(out, format="PNG", compress_level=compress_level)
    return out.getvalue()
