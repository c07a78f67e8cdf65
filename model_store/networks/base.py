"""What every generator in the store is: a module from latents (and a class) to images.

The contract (DESIGN.md): ``z`` [B, z_dim] float32, ``labels`` [B] int64 class indices
(or None for an unconditional model), ``psi`` [B] truncation per row (or None = 1),
output [B, C, H, W] in [-1, 1].
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, ClassVar, Literal

import torch
from torch import nn

TruncationMode = Literal["z_scale", "w_avg"]


@dataclass(frozen=True)
class GeneratorConfig:
    """Fields every architecture's config shares; subclasses add their own."""

    z_dim: int = 128  # latent size; a seed draws this many N(0, 1) numbers
    num_classes: int = 0  # 0 = unconditional; else labels in [0, num_classes)
    channels: int = 4  # 1 (MNIST), 3 (RGB) or 4 (premultiplied RGBA)
    resolution: int = 64  # output edge in pixels

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Generator(nn.Module):
    """Base class: validates inputs, applies truncation, calls ``synthesize``."""

    config: GeneratorConfig
    # How truncation applies: "z_scale" scales z by psi (deterministic, so a seed still
    # names its latent); "w_avg" pulls the mapped w towards the stored mean w.
    truncation_mode: ClassVar[TruncationMode] = "z_scale"

    def __init__(self, config: GeneratorConfig) -> None:
        super().__init__()
        self.config = config

    @property
    def z_dim(self) -> int:
        return self.config.z_dim

    @property
    def num_classes(self) -> int:
        return self.config.num_classes

    def forward(
        self,
        z: torch.Tensor,
        labels: torch.Tensor | None = None,
        psi: torch.Tensor | None = None,
    ) -> torch.Tensor:
        if z.ndim != 2 or z.shape[1] != self.z_dim:
            raise ValueError(f"z must have shape [B, {self.z_dim}], got {list(z.shape)}")
        if self.num_classes and labels is None:
            raise ValueError("this generator is class-conditional: labels are required")
        if psi is not None and self.truncation_mode == "z_scale":
            z = z * psi.to(z.dtype).view(-1, 1)
        return self.synthesize(z, labels if self.num_classes else None, psi)

    def synthesize(
        self, z: torch.Tensor, labels: torch.Tensor | None, psi: torch.Tensor | None
    ) -> torch.Tensor:
        raise NotImplementedError


def class_embedding(num_classes: int, dim: int) -> nn.Embedding | None:
    """An embedding for class-conditional generators, None for unconditional ones."""
    return nn.Embedding(num_classes, dim) if num_classes else None
