"""Batched pairwise squared L2 distances, shared by the k-NN style metrics."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

Rows = np.ndarray | torch.Tensor  # [N, ...] points: feature rows or images (flattened)


def as_rows(x: Rows, dtype: torch.dtype, device: torch.device | None = None) -> torch.Tensor:
    """Any [N, ...] array -> [N, D] tensor (images are flattened: L2 over every pixel), on
    ``device`` or where it is (a tensor stays on its device, a NumPy array is on the CPU)."""
    t = torch.as_tensor(np.asarray(x)) if not isinstance(x, torch.Tensor) else x
    return t.detach().reshape(len(t), -1).to(device=device, dtype=dtype)


def sq_distances(
    x: torch.Tensor, y: torch.Tensor, y_sq: torch.Tensor | None = None
) -> torch.Tensor:
    """||x_i - y_j||^2 for x [B, D], y [N, D] -> [B, N], via |x|^2 + |y|^2 - 2 x.y.

    The expansion is what makes 10k x 10k in high D affordable (one matmul), at the price of
    cancellation when |x| >> |x - y|: use float64, or centre the data, where that matters.
    """
    y_sq = (y * y).sum(1) if y_sq is None else y_sq  # [N]
    d = (x * x).sum(1, keepdim=True) + y_sq[None, :] - 2 * (x @ y.T)  # [B, N]
    return d.clamp_min_(0)


def row_batches(n: int, batch_size: int) -> Iterator[slice]:
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    for start in range(0, n, batch_size):
        yield slice(start, min(start + batch_size, n))
