"""A ResNet generator in the SNGAN/BigGAN family (Miyato & Koyama 2018; Brock et al. 2019).

Each block: conditional BN -> ReLU -> 2x nearest upsample -> 3x3 conv -> conditional BN ->
ReLU -> 3x3 conv, plus a 1x1-conv shortcut. The BN gains and biases are linear functions
of [z, class embedding] (BigGAN's shared embedding with skip-z), so unconditional models
still get self-modulation (Chen et al. 2019). Training-only parts (the projection
discriminator, spectral norm, hinge loss) live in ``training``.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import pairwise

import torch
import torch.nn.functional as F
from torch import nn

from model_store.networks.base import Generator, GeneratorConfig, class_embedding
from model_store.networks.dcgan import num_upsamplings
from model_store.networks.layers import ConditionalBatchNorm


@dataclass(frozen=True)
class ResNetConfig(GeneratorConfig):
    ch: int = 32  # base width; block widths are ch * multipliers
    # Width multipliers from 4x4 to full size; one more entry than upsamplings.
    multipliers: tuple[int, ...] = (16, 8, 4, 2, 1)
    embed_dim: int = 64  # shared class embedding width (conditional models only)


class UpBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, cond_dim: int) -> None:
        super().__init__()
        self.bn1 = ConditionalBatchNorm(c_in, cond_dim)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.bn2 = ConditionalBatchNorm(c_out, cond_dim)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1)
        self.skip = nn.Conv2d(c_in, c_out, 1)

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        h = F.interpolate(F.relu(self.bn1(x, cond)), scale_factor=2.0, mode="nearest")
        h = self.conv2(F.relu(self.bn2(self.conv1(h), cond)))
        return h + self.skip(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class ResNetGenerator(Generator):
    config: ResNetConfig

    def __init__(self, config: ResNetConfig) -> None:
        super().__init__(config)
        steps = num_upsamplings(config.resolution)
        if len(config.multipliers) != steps + 1:
            raise ValueError(
                f"resolution {config.resolution} needs {steps + 1} multipliers, "
                f"got {len(config.multipliers)}"
            )
        widths = [config.ch * m for m in config.multipliers]
        self.embed = class_embedding(config.num_classes, config.embed_dim)
        cond_dim = config.z_dim + (config.embed_dim if config.num_classes else 0)
        self.linear = nn.Linear(config.z_dim, widths[0] * 16)  # z -> 4x4 x widths[0]
        self.blocks = nn.ModuleList(
            UpBlock(c_in, c_out, cond_dim) for c_in, c_out in pairwise(widths)
        )
        self.out_bn = nn.BatchNorm2d(widths[-1])
        self.out_conv = nn.Conv2d(widths[-1], config.channels, 3, padding=1)

    def stem(self, z: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        x = self.linear(z).view(z.shape[0], -1, 4, 4)  # [B, widths[0], 4, 4]
        return self.blocks[0](x, self.condition(z, labels))  # the first non-linear features

    def body(self, x: torch.Tensor, z: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        cond = self.condition(z, labels)
        for block in self.blocks[1:]:
            x = block(x, cond)  # doubles the edge
        return torch.tanh(self.out_conv(F.relu(self.out_bn(x))))  # [B, C, R, R]

    def condition(self, z: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        return z if self.embed is None or labels is None else torch.cat([z, self.embed(labels)], 1)
