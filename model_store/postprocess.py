"""From generator output ([-1, 1] floats) to uint8 pixels, on the generator's device."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def resize(images: torch.Tensor, size: int) -> torch.Tensor:
    """Resize [B, C, H, W] floats to size x size: bicubic up (antialiased area-style down).

    Resizing happens before un-premultiplying, as image resampling should (otherwise the
    colours of transparent pixels bleed into the edges).
    """
    if images.shape[-1] == size and images.shape[-2] == size:
        return images
    up = size > images.shape[-1]
    mode = "bicubic" if up else "area"
    kwargs = {"align_corners": False} if up else {}
    return F.interpolate(images, size=(size, size), mode=mode, **kwargs)


def to_uint8(images: torch.Tensor, alpha: str, size: int | None = None) -> torch.Tensor:
    """[B, C, H, W] in [-1, 1] -> [B, size, size, C] uint8 with straight alpha for PNG."""
    x = ((images.float() + 1) / 2).clamp_(0, 1)  # [B, C, H, W] in [0, 1]
    if size is not None:
        x = resize(x, size).clamp_(0, 1)
    if alpha == "premultiplied" and x.shape[1] == 4:
        rgb, a = x[:, :3], x[:, 3:]
        # Un-premultiply; where alpha is ~0 the colour is invisible, so 0 is as good as any.
        rgb = torch.where(a > 1 / 512, (rgb / a.clamp_min(1 / 512)).clamp(0, 1), 0.0)
        x = torch.cat([rgb, a], dim=1)
    return (x * 255).round_().to(torch.uint8).permute(0, 2, 3, 1).contiguous()
