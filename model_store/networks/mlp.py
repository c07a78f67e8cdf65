"""The seed paper's generator (Goodfellow et al. 2014): a multilayer perceptron.

Their MNIST generator: z (100) -> 1200 ReLU -> 1200 ReLU -> 784 sigmoid. We keep the
sigmoid and map it to [-1, 1] so every generator shares one output range.
A class-conditional variant concatenates a learned class embedding to z
(Mirza & Osindero 2014).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from model_store.networks.base import Generator, GeneratorConfig, class_embedding


@dataclass(frozen=True)
class MLPConfig(GeneratorConfig):
    z_dim: int = 100
    channels: int = 1
    resolution: int = 28
    hidden: tuple[int, ...] = (1200, 1200)  # the paper's two ReLU layers
    embed_dim: int = 16  # class embedding width (conditional models only)


class MLPGenerator(Generator):
    config: MLPConfig

    def __init__(self, config: MLPConfig) -> None:
        super().__init__(config)
        self.embed = class_embedding(config.num_classes, config.embed_dim)
        width = config.z_dim + (config.embed_dim if config.num_classes else 0)
        layers: list[nn.Module] = []
        for hidden in config.hidden:
            layers += [nn.Linear(width, hidden), nn.ReLU()]
            width = hidden
        out = config.channels * config.resolution**2
        layers.append(nn.Linear(width, out))
        self.net = nn.Sequential(*layers)

    def stem(self, z: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        if self.embed is not None and labels is not None:
            z = torch.cat([z, self.embed(labels)], dim=1)
        return self.net[:2](z) if self.config.hidden else z  # the first ReLU layer

    def body(self, x: torch.Tensor, z: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        c, r = self.config.channels, self.config.resolution
        x = torch.sigmoid(self.net[2:](x) if self.config.hidden else self.net(x))
        return (x * 2 - 1).view(-1, c, r, r)  # [B, C, R, R] in [-1, 1]
