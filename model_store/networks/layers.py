"""Layers shared by several generators."""

from __future__ import annotations

import torch
from torch import nn


class ConditionalBatchNorm(nn.Module):
    """BatchNorm without its own affine; gain and bias come from a conditioning vector."""

    def __init__(self, channels: int, cond_dim: int) -> None:
        super().__init__()
        self.bn = nn.BatchNorm2d(channels, affine=False)
        self.gain = nn.Linear(cond_dim, channels)
        self.bias = nn.Linear(cond_dim, channels)
        # Start as plain BN: gain 1, bias 0.
        for linear in (self.gain, self.bias):
            nn.init.zeros_(linear.weight)
            nn.init.zeros_(linear.bias)

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        return self.modulate(self.bn(x), cond)

    def modulate(self, normalized: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """The conditional affine part alone, for already normalized ``x``."""
        gain = 1 + self.gain(cond)[:, :, None, None]
        return normalized * gain + self.bias(cond)[:, :, None, None]
