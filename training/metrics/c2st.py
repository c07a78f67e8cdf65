"""Classifier two-sample test (Lopez-Paz & Oquab 2017): can a fresh classifier tell them apart?

A small classifier learns real vs generated on one split and is scored on a held-out one.
Both classes are balanced in every split, so when the two sets come from one distribution
each held-out prediction is right with probability exactly 1/2: the accuracy is then
Binomial(n, 1/2) / n, which gives the p-value. 50% = indistinguishable, 100% = trivially fake.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from scipy import stats
from torch import nn


class C2STResult(NamedTuple):
    accuracy: float  # on the held-out split
    standard_error: float  # sqrt(acc (1 - acc) / n)
    n: int  # held-out points (half real, half generated)
    p_value: float  # one-sided binomial test of "no better than chance"


def _as_float_tensor(x: np.ndarray | torch.Tensor) -> torch.Tensor:
    """Images [N, C, H, W] (floats) or uint8 [N, H, W, C] (``to_uint8``'s layout), or
    features [N, D] -> float32 tensor, images as [N, C, H, W]."""
    t = torch.as_tensor(np.asarray(x)) if not isinstance(x, torch.Tensor) else x.detach().cpu()
    if t.ndim == 4 and t.dtype == torch.uint8 and t.shape[-1] in (1, 3, 4):
        t = t.permute(0, 3, 1, 2)
    if t.ndim not in (2, 4):
        raise ValueError(f"expected images [N, C, H, W] or features [N, D], got {tuple(t.shape)}")
    return t.float()


def small_cnn(channels: int) -> nn.Sequential:
    """Three stride-2 convs and a linear head on a 4x4 map (where things are still matters)."""
    return nn.Sequential(
        nn.Conv2d(channels, 16, 3, stride=2, padding=1),
        nn.LeakyReLU(0.2),
        nn.Conv2d(16, 32, 3, stride=2, padding=1),
        nn.LeakyReLU(0.2),
        nn.Conv2d(32, 64, 3, stride=2, padding=1),
        nn.LeakyReLU(0.2),
        nn.AdaptiveAvgPool2d(4),
        nn.Flatten(),
        nn.Linear(64 * 16, 1),
    )


def small_mlp(features: int, hidden: int = 128) -> nn.Sequential:
    return nn.Sequential(nn.Linear(features, hidden), nn.ReLU(), nn.Linear(hidden, 1))


def _split(
    real: torch.Tensor, fake: torch.Tensor, test_fraction: float, rng: np.random.Generator
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Balanced, shuffled train/test splits -> x_train, y_train, x_test, y_test (1 = real)."""
    n = min(len(real), len(fake))
    n_test = round(n * test_fraction)
    if n_test < 1 or n - n_test < 1:
        raise ValueError(f"{n} samples per class is too few for test_fraction={test_fraction}")
    r, f = real[rng.permutation(len(real))[:n]], fake[rng.permutation(len(fake))[:n]]
    y = torch.cat([torch.ones(n), torch.zeros(n)])  # [2n]: reals first, as in x
    x = torch.cat([r, f])  # [2n, ...]
    test = torch.cat([torch.arange(n_test), n + torch.arange(n_test)])  # n_test of each class
    train = torch.cat([torch.arange(n_test, n), n + torch.arange(n_test, n)])
    return x[train], y[train], x[test], y[test]


def _standardise(x_train: torch.Tensor, x_test: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per channel (images) or per feature, with the training split's statistics only."""
    dims = (0, 2, 3) if x_train.ndim == 4 else (0,)
    mean, std = x_train.mean(dims, keepdim=True), x_train.std(dims, keepdim=True) + 1e-6
    return (x_train - mean) / std, (x_test - mean) / std


def _train(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, epochs: int, batch_size: int, seed: int
) -> None:
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, weight_decay=1e-4)
    gen = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(x), generator=gen)
        for start in range(0, len(x), batch_size):
            idx = order[start : start + batch_size].to(x.device)
            loss = F.binary_cross_entropy_with_logits(model(x[idx]).squeeze(1), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()


@torch.no_grad()
def _accuracy_count(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int) -> int:
    model.eval()
    correct = 0
    for start in range(0, len(x), batch_size):
        pred = model(x[start : start + batch_size]).squeeze(1) > 0
        correct += int((pred == (y[start : start + batch_size] > 0.5)).sum())
    return correct


def classifier_two_sample_test(
    real: np.ndarray | torch.Tensor,
    fake: np.ndarray | torch.Tensor,
    test_fraction: float = 0.5,
    epochs: int | None = None,
    batch_size: int = 64,
    seed: int = 0,
    device: str | torch.device = "cpu",
) -> C2STResult:
    """Train a fresh small CNN (images) or MLP (features [N, D]) on real vs fake, score it
    on a held-out ``test_fraction``. Deterministic for a seed; the caller's RNG is untouched.

    epochs: default 8 for images, 30 for features (both converge on a few thousand samples).
    """
    r, f = _as_float_tensor(real), _as_float_tensor(fake)
    if r.shape[1:] != f.shape[1:]:
        raise ValueError(f"real and fake shapes differ: {tuple(r.shape)} vs {tuple(f.shape)}")
    rng = np.random.default_rng(seed)
    x_train, y_train, x_test, y_test = _split(r, f, test_fraction, rng)
    x_train, x_test = _standardise(x_train, x_test)
    dev = torch.device(device)
    x_train, y_train, x_test, y_test = (t.to(dev) for t in (x_train, y_train, x_test, y_test))
    images = x_train.ndim == 4
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)  # weight init; fork_rng restores the caller's state after
        model = (small_cnn(x_train.shape[1]) if images else small_mlp(x_train.shape[1])).to(dev)
    epochs = epochs if epochs is not None else (8 if images else 30)
    _train(model, x_train, y_train, epochs, batch_size, seed)
    correct, n = _accuracy_count(model, x_test, y_test, 256), len(y_test)
    acc = correct / n
    p_value = float(stats.binom.sf(correct - 1, n, 0.5))  # P(at least this many by chance)
    return C2STResult(acc, float(np.sqrt(acc * (1 - acc) / n)), n, p_value)
