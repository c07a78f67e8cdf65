"""DCGAN's generator (Radford et al. 2015): transposed convolutions, BatchNorm, ReLU, tanh.

z -> 4x4 x (ngf * 2^(n-1)) -> ... doubling the edge each layer -> R x R x C.
A class-conditional variant concatenates a learned class embedding to z.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from model_store.networks.base import Generator, GeneratorConfig, class_embedding


def num_upsamplings(resolution: int) -> int:
    """How many 2x steps take 4x4 to ``resolution`` (a power of two >= 8)."""
    steps = resolution.bit_length() - 3
    if resolution < 8 or 4 << steps != resolution:
        raise ValueError(f"resolution must be a power of two >= 8, got {resolution}")
    return steps


@dataclass(frozen=True)
class DCGANConfig(GeneratorConfig):
    ngf: int = 64  # width of the last hidden layer; earlier layers double it
    embed_dim: int = 32  # class embedding width (conditional models only)


class DCGANGenerator(Generator):
    config: DCGANConfig

    def __init__(self, config: DCGANConfig) -> None:
        super().__init__(config)
        self.embed = class_embedding(config.num_classes, config.embed_dim)
        steps = num_upsamplings(config.resolution)
        width = config.ngf * 2 ** (steps - 1)
        in_dim = config.z_dim + (config.embed_dim if config.num_classes else 0)
        layers: list[nn.Module] = [
            nn.ConvTranspose2d(in_dim, width, 4, 1, 0, bias=False),  # 1x1 -> 4x4
            nn.BatchNorm2d(width),
            nn.ReLU(),
        ]
        for _ in range(steps - 1):
            layers += [
                nn.ConvTranspose2d(width, width // 2, 4, 2, 1, bias=False),
                nn.BatchNorm2d(width // 2),
                nn.ReLU(),
            ]
            width //= 2
        layers += [nn.ConvTranspose2d(width, config.channels, 4, 2, 1), nn.Tanh()]
        self.net = nn.Sequential(*layers)

    def synthesize(
        self, z: torch.Tensor, labels: torch.Tensor | None, psi: torch.Tensor | None
    ) -> torch.Tensor:
        if self.embed is not None and labels is not None:
            z = torch.cat([z, self.embed(labels)], dim=1)
        return self.net(z[:, :, None, None])  # [B, C, R, R]
