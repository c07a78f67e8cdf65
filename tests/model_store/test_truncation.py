"""Truncation on the shipped emoji model keeps every category visible (it did not when
psi scaled z: benchmarks/truncation.md)."""

from __future__ import annotations

import numpy as np
import pytest

from model_store import ModelStore, seeds_to_latents
from model_store.paint import paint


@pytest.fixture(scope="module")
def emoji():
    return ModelStore().load("emoji", 1)


def opaque_share(pixels: list[np.ndarray]) -> np.ndarray:
    return np.array([(p[..., 3] >= 128).mean() for p in pixels])


def paint_every_class(emoji, psi: float) -> np.ndarray:
    g, m = emoji.generator, emoji.manifest
    labels = [c for c in range(len(m.class_names)) for _ in range(4)]
    z = seeds_to_latents(list(range(4)) * len(m.class_names), m.z_dim)
    return opaque_share(paint(g, m, z, labels, [psi] * len(labels), [m.resolution] * len(z)))


@pytest.mark.slow
def test_low_truncation_paints_visible_emoji_in_every_category(emoji) -> None:
    assert emoji.manifest.truncation == "feature_avg"
    for psi in (0.0, 0.25):
        assert paint_every_class(emoji, psi).min() > 0.2, psi
    emoji.generator.truncation_mode = "z_scale"  # what psi did before: blank images
    try:
        assert (paint_every_class(emoji, 0.0) < 0.02).sum() >= 5 * 4
    finally:
        emoji.generator.truncation_mode = "feature_avg"
