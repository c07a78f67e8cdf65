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


# --- latent-space arithmetic: the service and the paint command share these -------------


def lerp(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Straight line from ``a`` [z_dim] to ``b`` at fractions ``t`` [N] → [N, z_dim].
    Its middle is shorter than either end (|z| ≈ √z_dim at both ends, ≈ √(z_dim/2)
    halfway for independent draws), so midpoints look washed out: slerp is the default."""
    return a + t[:, None] * (b - a)


def slerp(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Great-circle path from ``a`` to ``b``, with the length interpolated linearly, so
    every frame stays on the prior's typical shell (White 2016, "Sampling generative
    networks"). Falls back to lerp for (anti)parallel or zero latents."""
    na, nb = a.norm(), b.norm()
    if na == 0 or nb == 0:
        return lerp(a, b, t)
    cos = torch.clamp(torch.dot(a / na, b / nb), -1.0, 1.0)
    omega = torch.arccos(cos)
    if torch.sin(omega).abs() < 1e-6:
        return lerp(a, b, t)
    wa, wb = torch.sin((1 - t) * omega), torch.sin(t * omega)  # [N]
    direction = (wa[:, None] * (a / na) + wb[:, None] * (b / nb)) / torch.sin(omega)
    return direction * (na + t * (nb - na))[:, None]


INTERPOLATIONS = {"slerp": slerp, "lerp": lerp}


def interpolate(a: torch.Tensor, b: torch.Tensor, steps: int, mode: str = "slerp") -> torch.Tensor:
    """``steps`` (>= 2) latents from ``a`` to ``b`` inclusive → [steps, z_dim] float32."""
    if steps < 2:
        raise ValueError(f"an interpolation needs at least 2 steps, got {steps}")
    if mode not in INTERPOLATIONS:
        raise ValueError(f"mode must be one of {', '.join(INTERPOLATIONS)}, got {mode!r}")
    t = torch.linspace(0, 1, steps, dtype=torch.float64)
    path = INTERPOLATIONS[mode](a.double(), b.double(), t).float()
    path[0], path[-1] = a, b  # the ends are exactly the given latents
    return path


def weighted_sum(latents: torch.Tensor, weights: list[float], rescale: bool = True) -> torch.Tensor:
    """Σ wᵢ zᵢ for ``latents`` [N, z_dim] → [z_dim].

    ``rescale`` divides by √(Σ wᵢ²): a weighted sum of independent N(0, I) draws is
    N(0, Σ wᵢ² I), so this puts it back on the prior's scale (z1 − z2 + z3 would
    otherwise be √3 times longer than any latent the generator was trained on)."""
    w = torch.tensor(weights, dtype=torch.float64)
    if len(w) != len(latents):
        raise ValueError(f"{len(latents)} latents but {len(w)} weights")
    scale = w.norm()
    if scale == 0:
        raise ValueError("the weights are all zero")
    total = (w[:, None] * latents.double()).sum(0)
    return (total / scale if rescale else total).float()
