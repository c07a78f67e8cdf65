"""Reading images into training's form: [R, R, 4] uint8 with straight alpha, square, resized
in premultiplied space so transparent edges do not fringe."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from training.data.dataset import DatasetError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")


def rgba_array(image: Image.Image, resolution: int) -> np.ndarray:
    """Any PIL image → [R, R, 4] uint8 straight alpha, resized (shorter side) and
    centre-cropped; resampling happens in premultiplied space so edges do not fringe."""
    image = image.convert("RGBA")
    w, h = image.size
    if (w, h) != (resolution, resolution):
        scale = resolution / min(w, h)
        size = (max(resolution, round(w * scale)), max(resolution, round(h * scale)))
        image = image.convert("RGBa").resize(size, Image.Resampling.LANCZOS).convert("RGBA")
        left, top = (size[0] - resolution) // 2, (size[1] - resolution) // 2
        image = image.crop((left, top, left + resolution, top + resolution))
    array = np.array(image, dtype=np.uint8)
    array[array[..., 3] == 0, :3] = 0
    return array


def read_image(path: Path | str, data: bytes | None = None) -> Image.Image:
    try:
        image = Image.open(io.BytesIO(data) if data is not None else path)
        image.load()
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise DatasetError(f"{path}: cannot read image ({exc})") from exc
    return image


def composite(array: np.ndarray, background: str) -> np.ndarray:
    """[R, R, 4] straight alpha → [R, R, 3] over a solid colour, or unchanged for "keep"."""
    if background == "keep":
        return array
    colour = np.array(Image.new("RGB", (1, 1), background).getpixel((0, 0)), dtype=np.float32)
    alpha = array[..., 3:].astype(np.float32) / 255.0
    rgb = array[..., :3].astype(np.float32) * alpha + colour * (1.0 - alpha)
    return np.round(rgb).astype(np.uint8)


def resize_batch(images: torch.Tensor, resolution: int) -> torch.Tensor:
    """Emoji come at 64 px; other training resolutions resize in premultiplied space."""
    if images.shape[-1] == resolution:
        return images
    rows = [
        rgba_array(Image.fromarray(im.permute(1, 2, 0).numpy(), "RGBA"), resolution)
        for im in images
    ]
    return torch.from_numpy(np.stack(rows)).permute(0, 3, 1, 2).contiguous()
