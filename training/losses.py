"""GAN objectives on discriminator logits.

- ``ns``: the seed paper's minimax D loss with the non-saturating generator loss
  -log D(G(z)) that Goodfellow et al. recommend (softplus forms for stability).
- ``hinge``: Lim & Ye 2017 / Miyato et al. 2018, used with spectral norm.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

LOSSES = ("ns", "hinge")


def d_loss_real(kind: str, real: torch.Tensor) -> torch.Tensor:
    """The discriminator's loss on real logits [B]: -log D(x) (ns) or max(0, 1 - D(x))."""
    check(kind)
    return F.softplus(-real).mean() if kind == "ns" else F.relu(1 - real).mean()


def d_loss_fake(kind: str, fake: torch.Tensor) -> torch.Tensor:
    """... on fake logits [B]: -log(1 - D(G(z))) (ns) or max(0, 1 + D(G(z)))."""
    check(kind)
    return F.softplus(fake).mean() if kind == "ns" else F.relu(1 + fake).mean()


def g_loss(kind: str, fake: torch.Tensor) -> torch.Tensor:
    """Generator loss from logits on fakes: -log D(G(z)) (ns) or -D(G(z)) (hinge)."""
    check(kind)
    return F.softplus(-fake).mean() if kind == "ns" else -fake.mean()


def check(kind: str) -> None:
    if kind not in LOSSES:
        raise ValueError(f"unknown loss {kind!r} (known: {', '.join(LOSSES)})")


def r1_penalty(real_logits: torch.Tensor, real_images: torch.Tensor) -> torch.Tensor:
    """Mescheder et al. 2018: mean squared gradient norm of D at real images."""
    (grad,) = torch.autograd.grad(real_logits.sum(), real_images, create_graph=True)
    return grad.square().sum((1, 2, 3)).mean()
