"""Sample grids from fixed seeds, so a person can watch a run learn and compare runs."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from model_store import Generator, seeds_to_latents, to_uint8


def grid_labels(rows: int, columns: int, num_classes: int) -> torch.Tensor | None:
    """Class per cell: one class per row of the grid (cycling), None if unconditional."""
    if not num_classes:
        return None
    return torch.tensor([(i // columns) % num_classes for i in range(rows * columns)])


@torch.no_grad()
def generate(
    generator: Generator, seeds: list[int], labels: torch.Tensor | None, batch_size: int = 64
) -> torch.Tensor:
    """Images [N, C, R, R] in [-1, 1] (the generator's own space) on the CPU; batched."""
    device = next(generator.parameters()).device
    out = []
    for start in range(0, len(seeds), batch_size):
        z = seeds_to_latents(seeds[start : start + batch_size], generator.z_dim).to(device)
        y = None if labels is None else labels[start : start + batch_size].to(device)
        out.append(generator(z, y).float().clamp(-1, 1).cpu())
    return torch.cat(out)


def generate_uint8(
    generator: Generator,
    seeds: list[int],
    labels: torch.Tensor | None,
    alpha: str,
    batch_size: int = 64,
) -> np.ndarray:
    """[N, H, W, C] uint8 images for ``seeds`` (eval mode; batched)."""
    return to_uint8(generate(generator, seeds, labels, batch_size), alpha).numpy()


def make_grid(
    images: np.ndarray, columns: int, background: tuple[int, int, int] = (255, 255, 255)
) -> Image.Image:
    """Tile [N, H, W, C] uint8 images (C = 1, 3 or 4) on ``background``, 2-pixel gaps."""
    n, h, w, c = images.shape
    rows = -(-n // columns)
    gap = 2
    grid = Image.new("RGB", (columns * (w + gap) + gap, rows * (h + gap) + gap), background)
    for i, img in enumerate(images):
        tile = Image.fromarray(img[..., 0] if c == 1 else img, {1: "L", 3: "RGB", 4: "RGBA"}[c])
        xy = (gap + (i % columns) * (w + gap), gap + (i // columns) * (h + gap))
        grid.paste(tile.convert("RGB") if c != 4 else tile, xy, tile if c == 4 else None)
    return grid


def sample_grid(generator: Generator, columns: int, alpha: str, scale: int = 1) -> Image.Image:
    """Seeds 0, 1, ... in a grid: one row per class (conditional), else a square."""
    rows = generator.num_classes or columns
    labels = grid_labels(rows, columns, generator.num_classes)
    seeds = list(range(rows * columns))
    grid = make_grid(generate_uint8(generator, seeds, labels, alpha), columns)
    if scale > 1:
        grid = grid.resize((grid.width * scale, grid.height * scale), Image.Resampling.NEAREST)
    return grid
