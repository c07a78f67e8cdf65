"""A frozen feature network for evaluation: a small conv classifier of the data's categories.

FD, KID and precision/recall need a fixed feature space. The standard one (Inception-v3 on
ImageNet) cannot be downloaded here and knows nothing of transparent 64x64 stickers, so the
evaluation trains this classifier on the training data once, freezes it and stores it like
any model (``kind="feature_extractor"``). Its features are the global-average-pooled output
of the last conv stage (ReLU, so non-negative), the layer before the class logits: the same
role Inception's pool3 plays for FID.

Input: what generators output, [B, C, R, R] in [-1, 1] (RGBA premultiplied for emoji), so
generated images need no conversion and real ones go through ``ImageDataset.to_float``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class FeatureNetConfig:
    channels: int = 4  # as the images it was trained on: 1, 3 or 4
    resolution: int = 64  # inputs of another size are resized to this first
    num_classes: int = 9  # the categories it was trained to tell apart
    widths: tuple[int, ...] = (32, 64, 128, 256)  # one conv stage each, halving the edge
    dropout: float = 0.3  # before the class head (training only)

    @property
    def feature_dim(self) -> int:
        return self.widths[-1]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class FeatureNet(nn.Module):
    """conv3x3-BN-ReLU-maxpool stages -> global average pool (features) -> class logits."""

    def __init__(self, config: FeatureNetConfig) -> None:
        super().__init__()
        self.config = config
        layers: list[nn.Module] = []
        c_in = config.channels
        for width in config.widths:
            layers += [
                nn.Conv2d(c_in, width, 3, padding=1, bias=False),
                nn.BatchNorm2d(width),
                nn.ReLU(),
                nn.MaxPool2d(2),
            ]
            c_in = width
        self.stages = nn.Sequential(*layers)
        self.dropout = nn.Dropout(config.dropout)
        self.head = nn.Linear(c_in, config.num_classes)

    def prepare(self, images: torch.Tensor) -> torch.Tensor:
        """Check channels, resize to the trained resolution (area down, bilinear up)."""
        if images.ndim != 4 or images.shape[1] != self.config.channels:
            raise ValueError(
                f"this feature network takes [B, {self.config.channels}, H, W] images, "
                f"got {list(images.shape)}"
            )
        r = self.config.resolution
        x = images.float()
        if x.shape[-2:] != (r, r):
            mode = "area" if x.shape[-1] > r else "bilinear"
            x = F.interpolate(x, size=(r, r), mode=mode)
        return x

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """[B, C, H, W] in [-1, 1] -> [B, feature_dim]."""
        return self.stages(self.prepare(images)).mean((2, 3))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """[B, C, H, W] in [-1, 1] -> class logits [B, num_classes]."""
        return self.head(self.dropout(self.features(images)))


FEATURE_ARCHITECTURES: dict[str, tuple[type[FeatureNetConfig], type[FeatureNet]]] = {
    "convnet": (FeatureNetConfig, FeatureNet),
}


def build_feature_net(architecture: str, values: dict[str, Any]) -> FeatureNet:
    """A freshly initialised feature network from plain (JSON) config values."""
    if architecture not in FEATURE_ARCHITECTURES:
        known = ", ".join(sorted(FEATURE_ARCHITECTURES))
        raise ValueError(f"unknown feature architecture {architecture!r} (known: {known})")
    config_cls, module_cls = FEATURE_ARCHITECTURES[architecture]
    clean = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
    return module_cls(config_cls(**clean))
