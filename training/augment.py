"""DiffAugment (Zhao et al. 2020): the same random, differentiable augmentations applied to
real and fake images before the discriminator, so it cannot memorise a small data set.

Randomness comes from an explicit ``torch.Generator`` (on the images' device) so a resumed
run draws exactly what the uninterrupted one would. Colour changes touch RGB only; for
RGBA the alpha channel keeps the shape, and translation and cutout fill with zeros
(transparent in premultiplied RGBA, black otherwise).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

POLICIES = ("color", "translation", "cutout")


def diff_augment(x: torch.Tensor, policy: str, gen: torch.Generator) -> torch.Tensor:
    """Apply the comma-separated ``policy`` (e.g. "color,translation,cutout") to [B, C, H, W]."""
    for name in filter(None, (p.strip() for p in policy.split(","))):
        if name not in POLICIES:
            raise ValueError(f"unknown augmentation {name!r} (known: {', '.join(POLICIES)})")
        x = {"color": color, "translation": translation, "cutout": cutout}[name](x, gen)
    return x


def rand(x: torch.Tensor, gen: torch.Generator, *shape: int) -> torch.Tensor:
    return torch.rand(x.shape[0], *shape, device=x.device, generator=gen, dtype=torch.float32)


def color(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Random brightness (+-0.5), saturation (x0..2) and contrast (x0.5..1.5) on RGB."""
    rgb, rest = x[:, :3], x[:, 3:]
    b = rand(x, gen, 1, 1, 1).to(x.dtype)
    s = rand(x, gen, 1, 1, 1).to(x.dtype)
    c = rand(x, gen, 1, 1, 1).to(x.dtype)
    rgb = rgb + (b - 0.5)
    mean = rgb.mean(dim=1, keepdim=True)
    rgb = (rgb - mean) * (s * 2) + mean
    mean = rgb.mean(dim=(1, 2, 3), keepdim=True)
    rgb = (rgb - mean) * (c + 0.5) + mean
    return torch.cat([rgb, rest], dim=1)


def translation(x: torch.Tensor, gen: torch.Generator, ratio: float = 0.125) -> torch.Tensor:
    """Shift each image by up to ``ratio`` of its size, padding with zeros."""
    b, _, h, w = x.shape
    sh, sw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    ty = (rand(x, gen) * (2 * sh + 1)).long() - sh  # [B] in [-sh, sh]
    tx = (rand(x, gen) * (2 * sw + 1)).long() - sw
    ys = torch.arange(h, device=x.device).view(1, h, 1) + ty.view(b, 1, 1)  # [B, H, 1]
    xs = torch.arange(w, device=x.device).view(1, 1, w) + tx.view(b, 1, 1)  # [B, 1, W]
    ys = ys.clamp(-1, h).add(1).expand(b, h, w)  # index into a 1-pixel zero border
    xs = xs.clamp(-1, w).add(1).expand(b, h, w)
    padded = F.pad(x, (1, 1, 1, 1))  # [B, C, H+2, W+2]
    flat = (ys * (w + 2) + xs).view(b, 1, h * w).expand(-1, x.shape[1], -1)
    return padded.flatten(2).gather(2, flat).view_as(x)


def cutout(x: torch.Tensor, gen: torch.Generator, ratio: float = 0.5) -> torch.Tensor:
    """Zero one random square of ``ratio`` of the size per image."""
    b, _, h, w = x.shape
    ch, cw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    cy = (rand(x, gen) * (h + 1 - ch % 2)).long()  # centre, as in the reference code
    cx = (rand(x, gen) * (w + 1 - cw % 2)).long()
    ys = torch.arange(h, device=x.device).view(1, h, 1)
    xs = torch.arange(w, device=x.device).view(1, 1, w)
    inside_y = (ys >= (cy - ch // 2).view(b, 1, 1)) & (ys < (cy - ch // 2 + ch).view(b, 1, 1))
    inside_x = (xs >= (cx - cw // 2).view(b, 1, 1)) & (xs < (cx - cw // 2 + cw).view(b, 1, 1))
    keep = ~(inside_y & inside_x)  # [B, H, W]
    return x * keep.unsqueeze(1).to(x.dtype)
