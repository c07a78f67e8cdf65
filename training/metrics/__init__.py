"""Offline image-quality metrics: plain numpy/scipy/torch functions, nothing downloaded.

Every distance is "in some feature space": the caller names the space in what it reports.
The FID Inception network lives in ``training.metrics.inception`` (optional, local weights).
"""

from training.metrics.c2st import C2STResult, classifier_two_sample_test
from training.metrics.frechet import (
    KernelDistance,
    feature_statistics,
    frechet_distance,
    frechet_distance_from_statistics,
    kernel_distance,
)
from training.metrics.nearest import (
    MemorizationReport,
    Neighbours,
    memorization_check,
    nearest_neighbours,
    save_nearest_pairs_png,
)
from training.metrics.parzen import (
    DEFAULT_SIGMAS,
    ParzenResult,
    log_likelihoods,
    parzen_evaluation,
    parzen_log_likelihood,
    select_sigma,
)
from training.metrics.precision_recall import PrecisionRecall, precision_recall

__all__ = [
    "DEFAULT_SIGMAS",
    "C2STResult",
    "KernelDistance",
    "MemorizationReport",
    "Neighbours",
    "ParzenResult",
    "PrecisionRecall",
    "classifier_two_sample_test",
    "feature_statistics",
    "frechet_distance",
    "frechet_distance_from_statistics",
    "kernel_distance",
    "log_likelihoods",
    "memorization_check",
    "nearest_neighbours",
    "parzen_evaluation",
    "parzen_log_likelihood",
    "precision_recall",
    "save_nearest_pairs_png",
    "select_sigma",
]
