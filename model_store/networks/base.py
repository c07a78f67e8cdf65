"""What every generator in the store is: a module from latents (and a class) to images.

The contract (docs/design.md, "Contracts"): ``z`` [B, z_dim] float32, ``labels`` [B]
int64 class indices (or None for an unconditional model), ``psi`` [B] truncation per row
(or None = 1), output [B, C, H, W] in [-1, 1].

Every architecture is a ``stem`` (z and class to its first non-linear features) and a
``body`` (those features to pixels); truncation works between the two.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

# "feature_avg": pull the stem's features towards their mean for the class (StyleGAN's
# w-average truncation, with the stem's output as w); psi = 0 paints the class's average.
# "z_scale": scale z by psi. In these nets all spatial layout enters through z (the first
# layer has no bias or constant input), so z -> 0 erases the shape and BatchNorm's fixed
# statistics leave a flat, mostly transparent background: measured on emoji v1, psi = 0
# painted 5 of 9 categories fully transparent (benchmarks/truncation.md).
TruncationMode = Literal["feature_avg", "z_scale"]
STEM_MEAN_SAMPLES = 2048  # per class; the mean's pixel effect is measured in the benchmark
STEM_MEAN_SEED = 0x7275  # fixed: the mean, like a seed's latent, is the same everywhere


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
    """Base class: validates inputs, applies truncation, runs ``stem`` then ``body``."""

    config: GeneratorConfig
    stem_means: torch.Tensor | None  # [max(num_classes, 1), *stem features]; feature_avg

    def __init__(self, config: GeneratorConfig) -> None:
        super().__init__()
        self.config = config
        # The stored manifest says which mode a saved model uses (the loader sets it).
        self.truncation_mode: TruncationMode = "feature_avg"
        # Not in the weights file: computed from the weights (fit_stem_means).
        self.register_buffer("stem_means", None, persistent=False)

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
        labels = labels if self.num_classes else None
        if psi is None:
            return self.body(self.stem(z, labels), z, labels)
        psi = psi.to(z.dtype).view(-1, 1)
        if self.truncation_mode == "z_scale":
            z = z * psi
            return self.body(self.stem(z, labels), z, labels)
        x = self.stem(z, labels)
        mean = self.class_stem_means(labels, z.shape[0]).to(x.dtype)
        # lerp is exact at psi = 1 (it returns ``x`` itself), so untruncated rows keep
        # their pixels. Later layers see z only linearly (BatchNorm gains): scaling it is
        # their average too.
        x = torch.lerp(mean, x, psi.to(x.dtype).view(-1, *[1] * (x.ndim - 1)))
        return self.body(x, z * psi, labels)

    def stem(self, z: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        raise NotImplementedError

    def body(self, x: torch.Tensor, z: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        raise NotImplementedError

    def class_stem_sums(self, z: torch.Tensor) -> torch.Tensor:
        """Σ over the rows of z of stem(z, c) for every class c (what fit_stem_means
        averages); an architecture whose stem shares work across classes overrides it."""
        return class_stem_sums(self, z)

    def class_stem_means(self, labels: torch.Tensor | None, batch: int) -> torch.Tensor:
        if self.stem_means is None:
            self.fit_stem_means()
        means = self.stem_means
        assert means is not None
        return means[labels] if labels is not None else means.expand(batch, *means.shape[1:])

    @torch.no_grad()
    def fit_stem_means(self, samples: int = STEM_MEAN_SAMPLES, chunk: int = 512) -> None:
        """The stem's mean features per class over the prior N(0, I), in float32, from a
        fixed draw: deterministic, so truncated images are the same on every device."""
        rng = np.random.Generator(np.random.PCG64(STEM_MEAN_SEED))
        half = rng.standard_normal((samples // 2, self.z_dim)).astype(np.float32)
        # Antithetic pairs (z, -z): the parts of the stem odd in z cancel exactly.
        z_all = torch.from_numpy(np.concatenate([half, -half]))
        samples = len(z_all)
        device = next(self.parameters()).device
        was_training = self.training
        self.eval()  # BatchNorm's running statistics, as when painting
        with torch.autocast(device.type, enabled=False):
            total = sum(self.class_stem_sums(z) for z in z_all.to(device).split(chunk))
        self.train(was_training)
        self.stem_means = total / samples


def class_stem_sums(generator: Generator, z: torch.Tensor) -> torch.Tensor:
    """Σ over the rows of z of stem(z, c), for every class c: [max(num_classes, 1), ...]."""
    if not generator.num_classes:
        return generator.stem(z, None).sum(0, keepdim=True)
    sums = []
    for label in range(generator.num_classes):
        labels = torch.full((len(z),), label, device=z.device)
        sums.append(generator.stem(z, labels).sum(0))
    return torch.stack(sums)


def class_embedding(num_classes: int, dim: int) -> nn.Embedding | None:
    """An embedding for class-conditional generators, None for unconditional ones."""
    return nn.Embedding(num_classes, dim) if num_classes else None
