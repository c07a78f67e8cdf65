"""Seeds name latents: the same everywhere, distinct across all 64 bits."""

from __future__ import annotations

import pytest
import torch

from model_store import DEFAULT_ROOT, MAX_SEED, ModelStore, latent_sha256, seed_to_latent


def test_same_seed_same_latent() -> None:
    assert torch.equal(seed_to_latent(42, 128), seed_to_latent(42, 128))
    assert seed_to_latent(42, 128).dtype == torch.float32


def test_seeds_that_differ_above_bit_32_name_different_latents() -> None:
    # torch.Generator.manual_seed keeps only 32 bits, which would alias these pairs.
    for seed in (0, 1, 12345):
        assert not torch.equal(seed_to_latent(seed, 8), seed_to_latent(seed + 2**32, 8))
    assert not torch.equal(seed_to_latent(2**63 - 1, 8), seed_to_latent(MAX_SEED, 8))


def test_latents_look_standard_normal() -> None:
    z = torch.stack([seed_to_latent(s, 64) for s in range(200)])
    assert abs(z.mean().item()) < 0.05 and abs(z.std().item() - 1) < 0.05


@pytest.mark.parametrize("seed", [-1, MAX_SEED + 1])
def test_out_of_range_seeds_are_refused(seed: int) -> None:
    with pytest.raises(ValueError, match="seed must be"):
        seed_to_latent(seed, 8)


# seed 0's latent at z_dim 128, as stored in the shipped emoji v1 manifest when it was trained.
EMOJI_V1_SEED0_SHA256 = "464a1bc68758fc23b387b1c6b1776ad32a15c3d7aeb6a9b4b82326654256c422"


def test_checksum_is_stable_for_seed_zero() -> None:
    # If this fails, the draw changed (a NumPy upgrade?): every stored model's start-up
    # check would fail, and seeds would no longer name the images they named.
    assert ModelStore(DEFAULT_ROOT).manifest("emoji", 1).seed0_latent_sha256 == (
        EMOJI_V1_SEED0_SHA256
    )
    assert latent_sha256(seed_to_latent(0, 128)) == EMOJI_V1_SEED0_SHA256
    for m in ModelStore(DEFAULT_ROOT).manifests(kind=None):  # every shipped model
        assert latent_sha256(seed_to_latent(0, m.z_dim)) == m.seed0_latent_sha256, m.ref
    assert latent_sha256(seed_to_latent(0, 4)) != latent_sha256(seed_to_latent(1, 4))
