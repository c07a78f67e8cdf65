"""Fréchet distance and the KID estimator between two sets of features.

Both are distances in whatever feature space produced the arrays: the caller names it (only
the Inception pool3 space makes an FD an "FID"). Features are [N, D] numpy arrays.

- Fréchet distance (Heusel et al. 2017): |mu1 - mu2|^2 + Tr(S1 + S2 - 2 (S1 S2)^(1/2)),
  computed as pytorch-fid's ``calculate_frechet_distance`` does. Biased upwards for finite
  samples: two samples of one distribution give FD > 0, growing like D^2 / N.
- KID (Bińkowski et al. 2018): the unbiased MMD^2 with the kernel k(x, y) = (x.y / D + 1)^3,
  averaged over random subsets; unbiased, so it can be (slightly) negative.
"""

from __future__ import annotations

import logging
import warnings
from typing import NamedTuple

import numpy as np
from scipy import linalg

log = logging.getLogger(__name__)


class KernelDistance(NamedTuple):
    mean: float  # mean unbiased MMD^2 over subsets
    std: float  # std over subsets (ddof=0, as torch-fidelity): the spread of one subset's value
    subset_size: int  # may be less than asked for when a feature set is smaller
    num_subsets: int


def feature_statistics(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """[N, D] -> mean [D] and covariance [D, D] (ddof=1, as np.cov and pytorch-fid)."""
    f = np.asarray(features, dtype=np.float64)
    if f.ndim != 2 or len(f) < 2:
        raise ValueError(f"features must be [N >= 2, D], got shape {f.shape}")
    return f.mean(axis=0), np.cov(f, rowvar=False).reshape(f.shape[1], f.shape[1])


def _sqrtm(a: np.ndarray) -> np.ndarray:
    # scipy warns (LinAlgWarning) on singular input; the caller checks finiteness instead.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", linalg.LinAlgWarning)
        return linalg.sqrtm(a)


def frechet_distance_from_statistics(
    mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray, eps: float = 1e-6
) -> float:
    """FD between N(mu1, sigma1) and N(mu2, sigma2)."""
    mu1, mu2 = np.atleast_1d(mu1), np.atleast_1d(mu2)
    sigma1, sigma2 = np.atleast_2d(sigma1), np.atleast_2d(sigma2)
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape:
        raise ValueError(f"shapes differ: {mu1.shape}/{sigma1.shape} vs {mu2.shape}/{sigma2.shape}")
    diff = mu1 - mu2
    covmean = _sqrtm(sigma1 @ sigma2)
    if not np.isfinite(covmean).all():
        # A (near-)singular product, e.g. fewer samples than dimensions: regularise both.
        log.warning("Fréchet distance: singular covariance product; adding %g to the diagonal", eps)
        offset = np.eye(sigma1.shape[0]) * eps
        covmean = _sqrtm((sigma1 + offset) @ (sigma2 + offset))
    if np.iscomplexobj(covmean):
        # Numerical error gives a small imaginary part; a large one means something is wrong.
        if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
            raise ValueError(f"imaginary component {np.max(np.abs(covmean.imag)):.3g} in sqrtm")
        covmean = covmean.real
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean))


def frechet_distance(features1: np.ndarray, features2: np.ndarray, eps: float = 1e-6) -> float:
    """FD between Gaussians fitted to two feature sets [N1, D] and [N2, D]."""
    return frechet_distance_from_statistics(
        *feature_statistics(features1), *feature_statistics(features2), eps=eps
    )


def _polynomial_kernel(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    k = x @ y.T / x.shape[1] + 1  # [Nx, Ny]
    return k * k * k  # faster than k ** 3, which goes through pow()


def _mmd2_unbiased(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased MMD^2 for equal-size x, y [m, D]: diagonal terms left out of Kxx and Kyy."""
    m = len(x)
    kxx, kyy, kxy = _polynomial_kernel(x, x), _polynomial_kernel(y, y), _polynomial_kernel(x, y)
    same = (kxx.sum() - np.trace(kxx) + kyy.sum() - np.trace(kyy)) / (m * (m - 1))
    return float(same - 2 * kxy.mean())


def kernel_distance(
    features1: np.ndarray,
    features2: np.ndarray,
    num_subsets: int = 100,
    subset_size: int = 1000,
    seed: int = 0,
) -> KernelDistance:
    """KID's estimator: mean and std of unbiased MMD^2 over random subsets (torch-fidelity's
    defaults: 100 subsets of 1000). subset_size is capped at the smaller set's size."""
    f1 = np.asarray(features1, dtype=np.float64)
    f2 = np.asarray(features2, dtype=np.float64)
    if f1.ndim != 2 or f2.ndim != 2 or f1.shape[1] != f2.shape[1]:
        raise ValueError(f"features must be [N, D] with one D, got {f1.shape} and {f2.shape}")
    m = min(subset_size, len(f1), len(f2))
    if m < 2:
        raise ValueError(f"need at least 2 features per set, got {len(f1)} and {len(f2)}")
    rng = np.random.default_rng(seed)
    values = np.array(
        [
            _mmd2_unbiased(
                f1[rng.choice(len(f1), m, replace=False)], f2[rng.choice(len(f2), m, replace=False)]
            )
            for _ in range(num_subsets)
        ]
    )  # [num_subsets]
    return KernelDistance(float(values.mean()), float(values.std()), m, num_subsets)
