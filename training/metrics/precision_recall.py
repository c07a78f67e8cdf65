"""Improved precision and recall (Kynkäänniemi et al. 2019) from k-NN manifold estimates.

Each set's manifold is the union of balls around its points, each ball reaching the point's
k-th nearest neighbour within the same set. Precision: the fraction of generated points inside
the real manifold (are samples realistic?). Recall: the fraction of real points inside the
generated manifold (is the variety covered?). Use the same feature space as FD/KID.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from training.metrics.distances import Rows, as_rows, row_batches, sq_distances


class PrecisionRecall(NamedTuple):
    precision: float
    recall: float
    k: int


def knn_radii(x: torch.Tensor, k: int, batch_size: int) -> torch.Tensor:
    """Squared distance from each row of x [N, D] to its k-th nearest other row -> [N]."""
    if not 1 <= k < len(x):
        raise ValueError(f"k must be in [1, {len(x) - 1}] for {len(x)} points, got {k}")
    x_sq = (x * x).sum(1)  # [N]
    radii = torch.empty(len(x), dtype=x.dtype, device=x.device)
    for rows in row_batches(len(x), batch_size):
        d2 = sq_distances(x[rows], x, x_sq)  # [B, N]
        # k + 1 smallest: the first is the point itself (distance 0), as in the paper's code.
        radii[rows] = d2.topk(k + 1, dim=1, largest=False).values[:, k]
    return radii


def precision_recall(
    real_features: Rows, fake_features: Rows, *, k: int = 3, batch_size: int = 1024
) -> PrecisionRecall:
    """Precision and recall of fake [Nf, D] against real [Nr, D] with k-NN radii.

    One pass over the real x fake distances answers both questions (rows for recall, columns
    for precision), so memory is O(batch_size * Nf). float32, with both sets centred on the
    real mean to keep |x|^2 (and the cancellation in |x|^2 + |y|^2 - 2 x.y) small.
    """
    real = as_rows(real_features, torch.float32)  # [Nr, D], on the real features' device
    dev = real.device
    fake = as_rows(fake_features, torch.float32, dev)  # [Nf, D]
    if real.shape[1] != fake.shape[1]:
        raise ValueError(f"feature sizes differ: real {real.shape[1]}, fake {fake.shape[1]}")
    centre = real.mean(0, keepdim=True)  # [1, D]
    real, fake = real - centre, fake - centre
    real_r, fake_r = knn_radii(real, k, batch_size), knn_radii(fake, k, batch_size)
    fake_sq = (fake * fake).sum(1)  # [Nf]
    fake_in_real = torch.zeros(len(fake), dtype=torch.bool, device=dev)  # [Nf]
    real_in_fake = torch.zeros(len(real), dtype=torch.bool, device=dev)  # [Nr]
    for rows in row_batches(len(real), batch_size):
        d2 = sq_distances(real[rows], fake, fake_sq)  # [B, Nf]
        fake_in_real |= (d2 <= real_r[rows, None]).any(dim=0)
        real_in_fake[rows] = (d2 <= fake_r[None, :]).any(dim=1)
    return PrecisionRecall(
        float(fake_in_real.double().mean()), float(real_in_fake.double().mean()), k
    )
