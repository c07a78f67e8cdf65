"""DCGAN's generator (Radford et al. 2015): transposed convolutions, BatchNorm, ReLU, tanh.

z -> 4x4 x (ngf * 2^(n-1)) -> ... doubling the edge each layer -> R x R x C.
Class-conditional models either concatenate a learned class embedding to z (``concat``,
the usual conditional DCGAN) or modulate every BatchNorm by [z, class embedding]
(``cbn``: conditional BN as in Miyato & Koyama 2018 and BigGAN), which conditions every
layer rather than only the input.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import pairwise
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from model_store.networks.base import Generator, GeneratorConfig, class_embedding
from model_store.networks.layers import ConditionalBatchNorm


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
    conditioning: Literal["concat", "cbn"] = "concat"  # how classes enter (see above)


class DCGANGenerator(Generator):
    config: DCGANConfig

    def __init__(self, config: DCGANConfig) -> None:
        super().__init__(config)
        self.embed = class_embedding(config.num_classes, config.embed_dim)
        self.cbn = bool(config.num_classes) and config.conditioning == "cbn"
        steps = num_upsamplings(config.resolution)
        widths = [config.ngf * 2 ** (steps - 1 - i) for i in range(steps)]
        embed_width = config.embed_dim if config.num_classes else 0
        in_dim = config.z_dim + (0 if self.cbn else embed_width)
        cond_dim = config.z_dim + embed_width
        self.convs = nn.ModuleList([nn.ConvTranspose2d(in_dim, widths[0], 4, 1, 0, bias=False)])
        self.convs.extend(
            nn.ConvTranspose2d(a, b, 4, 2, 1, bias=False) for a, b in pairwise(widths)
        )
        self.norms = nn.ModuleList(
            ConditionalBatchNorm(w, cond_dim) if self.cbn else nn.BatchNorm2d(w) for w in widths
        )
        self.out = nn.ConvTranspose2d(widths[-1], config.channels, 4, 2, 1)

    def stem(self, z: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        cond = self.condition(z, labels)
        x = (z if self.cbn else cond)[:, :, None, None]  # [B, in_dim, 1, 1]
        x = self.convs[0](x)  # [B, widths[0], 4, 4]
        return F.relu(self.norms[0](x, cond) if self.cbn else self.norms[0](x))

    def class_stem_sums(self, z: torch.Tensor) -> torch.Tensor:
        if not self.cbn:
            return super().class_stem_sums(z)
        # With conditional BN the first convolution and its normalization see z alone:
        # run them once, not once per class (benchmarks/truncation.md: 7.0 s → 0.9 s on
        # one loaded CPU thread).
        norm = self.norms[0]
        normalized = norm.bn(self.convs[0](z[:, :, None, None]))
        sums = []
        for label in range(self.num_classes):
            cond = self.condition(z, torch.full((len(z),), label, device=z.device))
            sums.append(F.relu(norm.modulate(normalized, cond)).sum(0))
        return torch.stack(sums)

    def body(self, x: torch.Tensor, z: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        cond = self.condition(z, labels)
        for conv, norm in zip(self.convs[1:], self.norms[1:], strict=True):
            x = conv(x)  # doubling the edge
            x = F.relu(norm(x, cond) if self.cbn else norm(x))
        return torch.tanh(self.out(x))  # [B, C, R, R]

    def condition(self, z: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        if self.embed is not None and labels is not None:
            return torch.cat([z, self.embed(labels)], dim=1)
        return z
