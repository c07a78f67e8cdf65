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


def test_an_untruncated_batch_needs_no_class_means_and_paints_the_same_pixels() -> None:
    # A fresh load: the means are not computed yet (a service is ready before they are).
    loaded = ModelStore().load("emoji", 1)
    g, m = loaded.generator, loaded.manifest
    z = seeds_to_latents(list(range(6)), m.z_dim)
    labels, sizes = [s % len(m.class_names) for s in range(6)], [m.resolution] * 6
    before = paint(g, m, z, labels, [1.0] * 6, sizes)
    assert g.stem_means is None
    paint(g, m, z[:1], labels[:1], [0.5], sizes[:1])  # a truncated row computes them
    assert g.stem_means is not None
    after = paint(g, m, z, labels, [1.0] * 6, sizes)
    mixed = paint(g, m, z, labels, [1.0] * 5 + [0.5], sizes)  # through lerp at ψ = 1
    for a, b, c in zip(before[:5], after, mixed, strict=False):
        assert np.array_equal(a, b) and np.array_equal(a, c)
