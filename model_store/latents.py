"""Seeds name latents: drawn on the CPU so a seed means the same z on every device.

Why NumPy's PCG64 and not ``torch.Generator().manual_seed``: torch's CPU generator
(mt19937) keeps only the low 32 bits of its seed (measured on torch 2.13:
``manual_seed(0)`` and ``manual_seed(2**32)`` draw the same numbers), so 64-bit seeds
would alias. PCG64 seeded through a SeedSequence uses every bit. The manifest stores
a checksum of seed 0's latent so a library change to the draw is caught at start-up.
"""

from __future__ import annotations

import hashlib

import numpy as np
import torch

MAX_SEED = 2**64 - 1  # seeds are unsigned 64-bit integers


def seed_to_latent(seed: int, z_dim: int) -> torch.Tensor:
    """The latent [z_dim] float32 for ``seed``: N(0, I), the same on every machine."""
    if not 0 <= seed <= MAX_SEED:
        raise ValueError(f"seed must be in [0, 2^64 - 1], got {seed}")
    rng = np.random.Generator(np.random.PCG64(seed))
    # float64 draw, then cast: the float32 ziggurat is a different (and less used) stream.
    return torch.from_numpy(rng.standard_normal(z_dim).astype(np.float32))


def seeds_to_latents(seeds: list[int], z_dim: int) -> torch.Tensor:
    """[B, z_dim] latents for a list of seeds."""
    return torch.stack([seed_to_latent(s, z_dim) for s in seeds])


def latent_sha256(z: torch.Tensor) -> str:
    """A checksum of a latent's float32 bytes (stored for seed 0 in each manifest)."""
    return hashlib.sha256(z.detach().to(torch.float32).contiguous().numpy().tobytes()).hexdigest()
