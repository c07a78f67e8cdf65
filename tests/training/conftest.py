"""Tiny generated data sets, so training tests run in seconds on two CPU cores."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from training.data import ImageDataset, save_dataset


def shapes_dataset(n: int = 48, resolution: int = 16, channels: int = 4) -> ImageDataset:
    """Two classes a generator can tell apart: red discs and blue squares on transparency."""
    gen = torch.Generator().manual_seed(0)
    ys, xs = torch.meshgrid(torch.arange(resolution), torch.arange(resolution), indexing="ij")
    images, labels = [], []
    for i in range(n):
        label = i % 2
        cy, cx = torch.randint(resolution // 4, 3 * resolution // 4, (2,), generator=gen)
        r = resolution // 4
        if label == 0:
            mask = (ys - cy) ** 2 + (xs - cx) ** 2 <= r * r
            rgb = (230, 40, 40)
        else:
            mask = ((ys - cy).abs() <= r) & ((xs - cx).abs() <= r)
            rgb = (40, 60, 230)
        image = torch.zeros(4, resolution, resolution, dtype=torch.uint8)
        for c, value in enumerate((*rgb, 255)):
            image[c][mask] = value
        images.append(
            image[:channels] if channels == 4 else image[:3] if channels == 3 else image[3:]
        )
        labels.append(label)
    return ImageDataset(
        images=torch.stack(images),
        labels=torch.tensor(labels),
        class_names=("Discs", "Squares"),
        names=tuple(f"shape-{i}" for i in range(n)),
        meta={
            "kind": "shapes",
            "description": "generated shapes",
            "credits": ["made up by the test suite"],
        },
    )


@pytest.fixture
def shapes_file(tmp_path: Path) -> Path:
    path = tmp_path / "shapes.dne.gz"
    save_dataset(shapes_dataset(), path)
    return path


@pytest.fixture
def make_shapes() -> Callable[..., ImageDataset]:
    return shapes_dataset
