"""Latent-space arithmetic shared by the service and the paint command."""

from __future__ import annotations

import math

import pytest
import torch

from model_store import seeds_to_latents
from model_store.latents import interpolate, weighted_sum

Z_DIM = 128


def test_interpolation_ends_are_the_given_latents_exactly() -> None:
    a, b = seeds_to_latents([1, 2], Z_DIM)
    for mode in ("slerp", "lerp"):
        path = interpolate(a, b, 9, mode)
        assert path.shape == (9, Z_DIM) and path.dtype == torch.float32
        assert torch.equal(path[0], a) and torch.equal(path[-1], b)


def test_slerp_stays_on_the_prior_shell_and_lerp_sags() -> None:
    a, b = seeds_to_latents([1, 2], Z_DIM)
    slerp_norms = interpolate(a, b, 17, "slerp").norm(dim=1)
    lerp_norms = interpolate(a, b, 17, "lerp").norm(dim=1)
    ends = sorted([a.norm().item(), b.norm().item()])
    # slerp interpolates the length itself: every frame lies between the ends' lengths.
    assert ends[0] - 1e-4 <= slerp_norms.min() and slerp_norms.max() <= ends[1] + 1e-4
    # Two independent draws are nearly orthogonal: lerp's midpoint is ~1/√2 as long.
    assert lerp_norms[8] / slerp_norms[8] == pytest.approx(1 / math.sqrt(2), abs=0.1)


def test_slerp_of_parallel_or_zero_latents_falls_back_to_lerp() -> None:
    a = seeds_to_latents([3], Z_DIM)[0]
    for b in (2 * a, torch.zeros(Z_DIM)):
        assert torch.allclose(interpolate(a, b, 5, "slerp"), interpolate(a, b, 5, "lerp"))


def test_bad_interpolations_are_refused() -> None:
    a, b = seeds_to_latents([1, 2], Z_DIM)
    with pytest.raises(ValueError, match="at least 2"):
        interpolate(a, b, 1)
    with pytest.raises(ValueError, match="slerp, lerp"):
        interpolate(a, b, 4, "cubic")


def test_weighted_sum_is_rescaled_to_the_prior() -> None:
    zs = seeds_to_latents(list(range(3)), Z_DIM)
    raw = weighted_sum(zs, [1, -1, 1], rescale=False)
    assert torch.allclose(raw, zs[0] - zs[1] + zs[2])
    assert torch.allclose(weighted_sum(zs, [1, -1, 1]), raw / math.sqrt(3))
    # Over many independent draws the rescaled sum has the prior's unit variance.
    many = seeds_to_latents(list(range(300)), Z_DIM).view(100, 3, Z_DIM)
    sums = torch.stack([weighted_sum(z, [2, -1, 0.5]) for z in many])
    assert sums.var().item() == pytest.approx(1.0, abs=0.05)


def test_weighted_sum_needs_matching_nonzero_weights() -> None:
    zs = seeds_to_latents([1, 2], Z_DIM)
    with pytest.raises(ValueError, match="all zero"):
        weighted_sum(zs, [0, 0])
    with pytest.raises(ValueError, match="2 latents but 3 weights"):
        weighted_sum(zs, [1, 2, 3])
