"""Discriminators, by name. They exist only for training, so they live here, not in the store.

- ``maxout``: Goodfellow et al. 2014's MNIST discriminator (maxout MLP with dropout).
- ``dcgan``: Radford et al. 2015 (strided convs, BatchNorm, LeakyReLU 0.2).
- ``projection``: the DCGAN shape with spectral norm on every layer and a projection head
  for classes (Miyato & Koyama 2018); pairs with the hinge loss.
- ``resnet``: SNGAN/BigGAN's ResNet discriminator with spectral norm and projection.

Every discriminator maps images [B, C, R, R] (and labels [B] when conditional) to
logits [B].
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from itertools import pairwise
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from model_store.networks.dcgan import num_upsamplings


@dataclass(frozen=True)
class DiscriminatorConfig:
    num_classes: int = 0  # 0 = unconditional
    channels: int = 4
    resolution: int = 64
    width: int = 64  # first layer's width (conv nets) or hidden units (maxout)
    pieces: int = 5  # maxout pieces per unit (maxout only)
    dropout: float = 0.5  # hidden dropout (maxout only; the paper also drops 20% of inputs)
    input_dropout: float = 0.2


class Maxout(nn.Module):
    """A linear layer whose each unit is the max over ``pieces`` linear pieces."""

    def __init__(self, d_in: int, units: int, pieces: int) -> None:
        super().__init__()
        self.units, self.pieces = units, pieces
        self.linear = nn.Linear(d_in, units * pieces)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x).view(-1, self.units, self.pieces).amax(dim=2)


class MaxoutDiscriminator(nn.Module):
    """Two maxout layers (240 units x 5 pieces in the paper), dropout, one logit."""

    def __init__(self, cfg: DiscriminatorConfig) -> None:
        super().__init__()
        d_in = cfg.channels * cfg.resolution**2
        self.embed = nn.Embedding(cfg.num_classes, d_in) if cfg.num_classes else None
        self.net = nn.Sequential(
            nn.Dropout(cfg.input_dropout),
            Maxout(d_in, cfg.width, cfg.pieces),
            nn.Dropout(cfg.dropout),
            Maxout(cfg.width, cfg.width, cfg.pieces),
            nn.Dropout(cfg.dropout),
            nn.Linear(cfg.width, 1),
        )

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        x = x.flatten(1)
        if self.embed is not None and labels is not None:
            x = x + self.embed(labels)  # a learned class offset on the input
        return self.net(x).squeeze(1)


def conv_stack(cfg: DiscriminatorConfig, sn: bool, batchnorm: bool) -> tuple[nn.Sequential, int]:
    """Strided 4x4 convs from R x R down to 4x4; returns the stack and its output width."""
    wrap = spectral_norm if sn else (lambda m: m)
    slope = 0.1 if sn else 0.2  # SNGAN uses 0.1, DCGAN 0.2
    layers: list[nn.Module] = []
    width, c_in = cfg.width, cfg.channels
    for i in range(num_upsamplings(cfg.resolution)):
        layers.append(wrap(nn.Conv2d(c_in, width, 4, 2, 1, bias=not batchnorm)))
        if batchnorm and i > 0:  # DCGAN: no BN on the first layer
            layers.append(nn.BatchNorm2d(width))
        layers.append(nn.LeakyReLU(slope))
        c_in, width = width, width * 2
    return nn.Sequential(*layers), c_in


class DCGANDiscriminator(nn.Module):
    """Radford et al.: the conv stack, then a 4x4 valid conv to one logit."""

    def __init__(self, cfg: DiscriminatorConfig) -> None:
        super().__init__()
        self.features, width = conv_stack(cfg, sn=False, batchnorm=True)
        self.embed = nn.Embedding(cfg.num_classes, width * 16) if cfg.num_classes else None
        self.head = nn.Linear(width * 16, 1)  # = a 4x4 valid conv

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        h = self.features(x).flatten(1)  # [B, width * 16]
        out = self.head(h).squeeze(1)
        if self.embed is not None and labels is not None:
            out = out + (self.embed(labels) * h).sum(1)
        return out


class ProjectionDiscriminator(nn.Module):
    """The DCGAN conv stack with spectral norm everywhere and a projection head."""

    def __init__(self, cfg: DiscriminatorConfig) -> None:
        super().__init__()
        self.features, width = conv_stack(cfg, sn=True, batchnorm=False)
        self.head = spectral_norm(nn.Linear(width * 16, 1))
        self.embed = (
            spectral_norm(nn.Embedding(cfg.num_classes, width)) if cfg.num_classes else None
        )

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        h = self.features(x)  # [B, width, 4, 4]
        out = self.head(h.flatten(1)).squeeze(1)
        if self.embed is not None and labels is not None:
            out = out + (self.embed(labels) * h.sum((2, 3))).sum(1)  # projection term
        return out


class DownBlock(nn.Module):
    """SNGAN's discriminator block: ReLU-conv-ReLU-conv-avgpool plus a 1x1 shortcut."""

    def __init__(self, c_in: int, c_out: int, first: bool) -> None:
        super().__init__()
        self.first = first
        self.conv1 = spectral_norm(nn.Conv2d(c_in, c_out, 3, padding=1))
        self.conv2 = spectral_norm(nn.Conv2d(c_out, c_out, 3, padding=1))
        self.skip = spectral_norm(nn.Conv2d(c_in, c_out, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x if self.first else F.relu(x)
        h = F.avg_pool2d(self.conv2(F.relu(self.conv1(h))), 2)
        s = self.skip(F.avg_pool2d(x, 2)) if self.first else F.avg_pool2d(self.skip(x), 2)
        return h + s


class ResNetDiscriminator(nn.Module):
    def __init__(self, cfg: DiscriminatorConfig) -> None:
        super().__init__()
        steps = num_upsamplings(cfg.resolution)
        widths = [cfg.channels] + [cfg.width * 2**i for i in range(steps)]
        self.blocks = nn.Sequential(
            *(DownBlock(a, b, first=i == 0) for i, (a, b) in enumerate(pairwise(widths)))
        )
        self.head = spectral_norm(nn.Linear(widths[-1], 1))
        self.embed = (
            spectral_norm(nn.Embedding(cfg.num_classes, widths[-1])) if cfg.num_classes else None
        )

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        h = F.relu(self.blocks(x)).sum((2, 3))  # [B, width]: global sum pooling
        out = self.head(h).squeeze(1)
        if self.embed is not None and labels is not None:
            out = out + (self.embed(labels) * h).sum(1)
        return out


DISCRIMINATORS: dict[str, type[nn.Module]] = {
    "maxout": MaxoutDiscriminator,
    "dcgan": DCGANDiscriminator,
    "projection": ProjectionDiscriminator,
    "resnet": ResNetDiscriminator,
}


def build_discriminator(name: str, values: dict[str, Any]) -> nn.Module:
    if name not in DISCRIMINATORS:
        raise ValueError(f"unknown discriminator {name!r} (known: {', '.join(DISCRIMINATORS)})")
    known = {f.name for f in fields(DiscriminatorConfig)}
    if unknown := sorted(set(values) - known):
        raise ValueError(f"discriminator config has no field(s) {', '.join(unknown)}")
    return DISCRIMINATORS[name](DiscriminatorConfig(**values))
