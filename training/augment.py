"""DiffAugment (Zhao et al. 2020): the same random, differentiable augmentations applied to
real and fake images before the discriminator, so it cannot memorise a small data set.

The random numbers come in as one tensor ``params`` [B, num_params(policy)] of uniforms in
[0, 1), drawn by the caller in one call on the images' device (the trainer draws a whole
step's at once, from a stream a resume reproduces). The functions themselves draw nothing,
so they are pure tensor code that ``torch.compile`` and CUDA graphs can take in.

Colour changes touch RGB only; for RGBA the alpha channel keeps the shape, and translation
and cutout fill with zeros (transparent in premultiplied RGBA, black otherwise).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache

import torch
import torch.nn.functional as F


def color(x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """Random brightness (+-0.5), saturation (x0..2) and contrast (x0.5..1.5) on RGB."""
    rgb, rest = x[:, :3], x[:, 3:]
    b, s, c = (u[:, i].view(-1, 1, 1, 1).to(x.dtype) for i in range(3))
    rgb = rgb + (b - 0.5)
    mean = rgb.mean(dim=1, keepdim=True)
    rgb = (rgb - mean) * (s * 2) + mean
    mean = rgb.mean(dim=(1, 2, 3), keepdim=True)
    rgb = (rgb - mean) * (c + 0.5) + mean
    return torch.cat([rgb, rest], dim=1)


def translation(x: torch.Tensor, u: torch.Tensor, ratio: float = 0.125) -> torch.Tensor:
    """Shift each image by up to ``ratio`` of its size, padding with zeros."""
    b, _, h, w = x.shape
    sh, sw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    ty = (u[:, 0] * (2 * sh + 1)).long() - sh  # [B] in [-sh, sh]
    tx = (u[:, 1] * (2 * sw + 1)).long() - sw
    ys = torch.arange(h, device=x.device).view(1, h, 1) + ty.view(b, 1, 1)  # [B, H, 1]
    xs = torch.arange(w, device=x.device).view(1, 1, w) + tx.view(b, 1, 1)  # [B, 1, W]
    ys = ys.clamp(-1, h).add(1).expand(b, h, w)  # index into a 1-pixel zero border
    xs = xs.clamp(-1, w).add(1).expand(b, h, w)
    padded = F.pad(x, (1, 1, 1, 1))  # [B, C, H+2, W+2]
    flat = (ys * (w + 2) + xs).view(b, 1, h * w).expand(-1, x.shape[1], -1)
    return padded.flatten(2).gather(2, flat).view_as(x)


def cutout(x: torch.Tensor, u: torch.Tensor, ratio: float = 0.5) -> torch.Tensor:
    """Zero one random square of ``ratio`` of the size per image."""
    b, _, h, w = x.shape
    ch, cw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    cy = (u[:, 0] * (h + 1 - ch % 2)).long()  # centre, as in the reference code
    cx = (u[:, 1] * (w + 1 - cw % 2)).long()
    ys = torch.arange(h, device=x.device).view(1, h, 1)
    xs = torch.arange(w, device=x.device).view(1, 1, w)
    inside_y = (ys >= (cy - ch // 2).view(b, 1, 1)) & (ys < (cy - ch // 2 + ch).view(b, 1, 1))
    inside_x = (xs >= (cx - cw // 2).view(b, 1, 1)) & (xs < (cx - cw // 2 + cw).view(b, 1, 1))
    keep = ~(inside_y & inside_x)  # [B, H, W]
    return x * keep.unsqueeze(1).to(x.dtype)


# Each augmentation and how many uniforms per image it reads.
AUGMENTATIONS: dict[str, tuple[Callable[[torch.Tensor, torch.Tensor], torch.Tensor], int]] = {
    "color": (color, 3),
    "translation": (translation, 2),
    "cutout": (cutout, 2),
}


@cache
def parse_policy(policy: str) -> tuple[str, ...]:
    """``"color,translation,cutout"`` -> its names, checked; ``""`` -> none."""
    names = tuple(filter(None, (p.strip() for p in policy.split(","))))
    for name in names:
        if name not in AUGMENTATIONS:
            raise ValueError(f"unknown augmentation {name!r} (known: {', '.join(AUGMENTATIONS)})")
    return names


def num_params(policy: str) -> int:
    """Uniforms per image that ``policy`` reads."""
    return sum(AUGMENTATIONS[name][1] for name in parse_policy(policy))


def diff_augment(x: torch.Tensor, policy: str, params: torch.Tensor) -> torch.Tensor:
    """Apply ``policy`` to ``x`` [B, C, H, W] with ``params`` [B, num_params(policy)]."""
    column = 0
    for name in parse_policy(policy):
        function, count = AUGMENTATIONS[name]
        x = function(x, params[:, column : column + count])
        column += count
    return x
