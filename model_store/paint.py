"""Latents in, uint8 pixels out: the one painting step the service's engine and the paint
command share (class, truncation and output size per row)."""

from __future__ import annotations

import numpy as np
import torch

from model_store.manifest import Manifest
from model_store.networks import Generator
from model_store.postprocess import to_uint8
from model_store.precision import autocast


@torch.inference_mode()
def paint(
    generator: Generator,
    manifest: Manifest,
    z: torch.Tensor,
    labels: list[int | None],
    psi: list[float],
    sizes: list[int],
    dtype: torch.dtype | None = None,
) -> list[np.ndarray]:
    """One forward pass for ``z`` [B, z_dim]; [size, size, C] uint8 per row."""
    device = next(generator.parameters()).device
    z = z.to(device, non_blocking=True)
    label_tensor = None
    if manifest.conditional:
        label_tensor = torch.tensor([label or 0 for label in labels], device=device)
    # An untruncated batch paints without truncation: the same pixels (lerp at ψ = 1
    # returns its input, z * 1 is z), and it needs no class feature means, so a service
    # paints it before they are computed (app/registry.py).
    psi_tensor = None if all(p == 1.0 for p in psi) else torch.tensor(psi, device=device)
    with autocast(device, dtype):
        images = generator(z, label_tensor, psi_tensor)
    out: list[np.ndarray | None] = [None] * len(z)
    # Rows of one batch may ask for different sizes: resize per size group, on the device.
    for size in set(sizes):
        rows = [i for i, s in enumerate(sizes) if s == size]
        target = None if size == manifest.resolution else size
        pixels = to_uint8(images[rows], manifest.alpha, target).cpu().numpy()
        for i, image in zip(rows, pixels, strict=True):
            out[i] = image
    return out  # type: ignore[return-value]
