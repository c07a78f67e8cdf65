"""An exponential moving average of the generator's weights, and BatchNorm's standing stats.

The EMA generator is the one that is sampled and exported: averaging the weights of a GAN
generator over the last few thousand images removes much of the step-to-step noise
(Yazici et al. 2019; StyleGAN2 and BigGAN both ship it).
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from model_store.networks import Generator


def ema_beta(batch_size: int, halflife_kimg: float, images_seen: int, rampup: float) -> float:
    """Decay per step so a weight's influence halves every ``halflife_kimg`` thousand images.

    With ``rampup`` the half-life is at most ``rampup`` x images seen, so early, random
    weights are forgotten quickly (as in stylegan2-ada-pytorch).
    """
    if halflife_kimg <= 0:
        return 0.0  # no averaging: the EMA copy follows the generator
    halflife = halflife_kimg * 1000
    if rampup > 0:
        halflife = min(halflife, images_seen * rampup)
    return 0.5 ** (batch_size / max(halflife, 1e-8))


@torch.no_grad()
def update_ema(ema: nn.Module, model: nn.Module, beta: float) -> None:
    """ema <- beta * ema + (1 - beta) * model for the weights; buffers (BatchNorm
    statistics) are copied. One multi-tensor kernel each, not one per tensor."""
    ema_params, params = list(ema.parameters()), list(model.parameters())
    ema_buffers, buffers = list(ema.buffers()), list(model.buffers())
    if len(ema_params) != len(params) or len(ema_buffers) != len(buffers):
        raise ValueError("the EMA copy and the model have different parameters")
    torch._foreach_lerp_(ema_params, params, 1 - beta)
    if buffers:  # an MLP generator has none
        torch._foreach_copy_(ema_buffers, buffers)


@torch.no_grad()
def with_standing_stats(
    generator: Generator, batches: int = 16, batch_size: int = 64, seed: int = 0
) -> Generator:
    """A copy of ``generator`` whose BatchNorm statistics are re-estimated for its own weights.

    BN running statistics track the training generator, not its weight average; BigGAN's
    "standing statistics" fix that by averaging batch statistics of the EMA weights over
    many random batches. Deterministic for a given seed. Returns an eval-mode copy.
    """
    g = copy.deepcopy(generator)
    norms = [m for m in g.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return g.eval()
    device = next(g.parameters()).device
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over all batches
    gen = torch.Generator(device="cpu").manual_seed(seed)
    g.train()
    for _ in range(batches):
        z = torch.randn(batch_size, g.z_dim, generator=gen).to(device)
        labels = None
        if g.num_classes:
            labels = torch.randint(0, g.num_classes, (batch_size,), generator=gen).to(device)
        g(z, labels)
    for m in norms:
        m.momentum = 0.1
    return g.eval()
