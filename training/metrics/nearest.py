"""Memorisation check: each generated image's nearest training image, and a picture of them.

A "does not exist" service must show its images are not copies. Distances alone mean little,
so the same search runs for held-out real images: "generated -> train" distances well below
"held-out real -> train" ones are the sign of copying. L2 in whatever space the arrays are
in (pixels or features, the caller names it); pass both sets on one scale.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from training.metrics.distances import Rows, as_rows, row_batches, sq_distances


class Neighbours(NamedTuple):
    index: np.ndarray  # [Nq] int64: row of the nearest reference
    distance: np.ndarray  # [Nq] float64: its L2 distance


def nearest_neighbours(
    queries: Rows, references: Rows, batch_size: int = 512, candidates: int = 8
) -> Neighbours:
    """Nearest row of ``references`` [Nr, ...] for each of ``queries`` [Nq, ...] (flattened).

    A float32 search (fast) picks ``candidates`` per query; exact float64 distances re-rank
    them, so an exact copy comes back at distance 0.0, not at float32 rounding noise.
    """
    ref64 = as_rows(references, torch.float64)  # [Nr, D], on the references' device
    dev = ref64.device
    centre = ref64.mean(0, keepdim=True)  # centring keeps float32 cancellation small
    ref = (ref64 - centre).float()
    ref_sq = (ref * ref).sum(1)  # [Nr]
    c = min(candidates, len(ref))
    index = np.empty(len(queries), dtype=np.int64)
    distance = np.empty(len(queries), dtype=np.float64)
    for rows in row_batches(len(queries), batch_size):
        q64 = as_rows(queries[rows], torch.float64, dev)  # [B, D]
        if q64.shape[1] != ref.shape[1]:
            raise ValueError(f"queries have {q64.shape[1]} values each, references {ref.shape[1]}")
        cand = sq_distances((q64 - centre).float(), ref, ref_sq).topk(c, largest=False).indices
        # One candidate at a time: [B, c, D] in float64 would be 400 MB for 64x64 RGB.
        exact = torch.stack([(q64 - ref64[cand[:, j]]).square().sum(1) for j in range(c)], 1)
        best = exact.argmin(1)  # [B]
        pick = torch.arange(len(best), device=dev)
        index[rows] = cand[pick, best].cpu().numpy()
        distance[rows] = exact[pick, best].sqrt().cpu().numpy()
    return Neighbours(index, distance)


@dataclass(frozen=True)
class MemorizationReport:
    generated: Neighbours  # generated -> train
    held_out: Neighbours  # held-out real -> train: how far "new but real" images sit

    def copy_fraction(self, quantile: float = 0.01) -> float:
        """Fraction of generated images closer to train than ``quantile`` of held-out ones."""
        threshold = float(np.quantile(self.held_out.distance, quantile))
        return float((self.generated.distance < threshold).mean())

    def summary(self) -> dict[str, float]:
        g, h = self.generated.distance, self.held_out.distance
        return {
            "generated_min": float(g.min()),
            "generated_median": float(np.median(g)),
            "held_out_min": float(h.min()),
            "held_out_median": float(np.median(h)),
            "median_ratio": float(np.median(g) / max(np.median(h), 1e-12)),
            "copy_fraction_q01": self.copy_fraction(0.01),
            "exact_copies": float((g == 0).sum()),
        }


def memorization_check(
    generated: Rows, train: Rows, held_out: Rows, batch_size: int = 512
) -> MemorizationReport:
    """Nearest training neighbours of generated and of held-out real samples (one space)."""
    return MemorizationReport(
        nearest_neighbours(generated, train, batch_size),
        nearest_neighbours(held_out, train, batch_size),
    )


def _to_rgba(images: np.ndarray) -> np.ndarray:
    """uint8 [N, H, W] or [N, H, W, C] with C in 1, 3, 4 -> [N, H, W, 4]."""
    x = np.asarray(images)
    if x.dtype != np.uint8:
        raise ValueError(f"images must be uint8 [N, H, W, C], got {x.dtype}")
    x = x[..., None] if x.ndim == 3 else x
    if x.ndim != 4 or x.shape[-1] not in (1, 3, 4):
        raise ValueError(f"images must be [N, H, W, C] with C in 1, 3, 4, got {x.shape}")
    if x.shape[-1] == 1:
        x = np.repeat(x, 3, axis=-1)
    if x.shape[-1] == 3:
        x = np.concatenate([x, np.full((*x.shape[:-1], 1), 255, np.uint8)], axis=-1)
    return x


def _tile(image: np.ndarray, scale: int) -> Image.Image:
    """One RGBA image over a light checkerboard (so transparency shows), upscaled."""
    h, w = image.shape[:2]
    yy, xx = np.mgrid[0:h, 0:w]
    board = np.where(((yy // 4 + xx // 4) % 2)[..., None] == 0, 255, 220).astype(np.uint8)
    background = Image.fromarray(np.repeat(board, 3, axis=-1)).convert("RGBA")
    tile = Image.alpha_composite(background, Image.fromarray(image, "RGBA")).convert("RGB")
    return tile.resize((w * scale, h * scale), Image.Resampling.NEAREST)


def save_nearest_pairs_png(
    generated_images: np.ndarray,
    train_images: np.ndarray,
    neighbours: Neighbours,
    path: str | Path,
    k: int = 16,
    columns: int = 4,
) -> Path:
    """PNG grid of the k generated images closest to the training set, each beside its
    nearest training image and captioned with the distance. Images: uint8 [N, H, W, C]."""
    gen, train = _to_rgba(generated_images), _to_rgba(train_images)
    order = np.argsort(neighbours.distance, kind="stable")[:k]
    h, w = gen.shape[1:3]
    scale = max(1, 64 // max(h, w))  # MNIST's 28x28 would be too small to judge
    tw, th, pad, caption = w * scale, h * scale, 6, 14
    rows = (len(order) + columns - 1) // columns
    sheet = Image.new("RGB", (columns * (2 * tw + 3 * pad), rows * (th + caption + pad)), "white")
    draw, font = ImageDraw.Draw(sheet), ImageFont.load_default()
    for slot, i in enumerate(order):
        x0 = (slot % columns) * (2 * tw + 3 * pad) + pad
        y0 = (slot // columns) * (th + caption + pad) + pad // 2
        sheet.paste(_tile(gen[i], scale), (x0, y0))
        sheet.paste(_tile(train[neighbours.index[i]], scale), (x0 + tw + pad // 2, y0))
        draw.text((x0, y0 + th + 1), f"d={neighbours.distance[i]:.3g}", fill="black", font=font)
    out = Path(path)
    sheet.save(out)
    return out
