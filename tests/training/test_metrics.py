"""Every metric on cases with a known answer. Fixed seeds; thresholds come from the sample
sizes (standard errors, known finite-sample biases), not from whatever one run printed."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from scipy import stats
from scipy.special import logsumexp

from model_store import sha256_file
from training.metrics import (
    DEFAULT_SIGMAS,
    classifier_two_sample_test,
    frechet_distance,
    frechet_distance_from_statistics,
    kernel_distance,
    log_likelihoods,
    memorization_check,
    nearest_neighbours,
    parzen_evaluation,
    parzen_log_likelihood,
    precision_recall,
    save_nearest_pairs_png,
    select_sigma,
)
from training.metrics.inception import (
    FIDInceptionV3,
    InceptionWeightsError,
    inception_features,
    load_fid_inception,
)


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """Small ops on 2 shared cores: OpenMP threads spinning against other work cost 50x."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def gaussian(n: int, d: int, seed: int, mean: float = 0.0, scale: float = 1.0) -> np.ndarray:
    return np.random.default_rng(seed).normal(mean, scale, size=(n, d))


# --- Parzen window ----------------------------------------------------------------------


def test_parzen_matches_a_brute_force_mixture_of_gaussians() -> None:
    mu, x = gaussian(7, 5, 0), gaussian(4, 5, 1)
    sigmas = [0.3, 1.0, 2.5]
    got = log_likelihoods(mu, x, sigmas, batch_size=3)  # batches that do not divide M
    for i, s in enumerate(sigmas):
        comps = stats.multivariate_normal(np.zeros(5), s * s * np.eye(5))
        per = np.array([[comps.logpdf(xi - m) for m in mu] for xi in x])  # [M, N]
        np.testing.assert_allclose(got[i], logsumexp(per, axis=1) - math.log(len(mu)), rtol=1e-10)


def test_parzen_of_one_centre_is_that_gaussian_even_far_out() -> None:
    """log-sum-exp keeps a point 100 sigmas away finite and exact (no exp underflow)."""
    d, sigma = 784, 0.1
    mu = np.full((1, d), 0.5)
    x = mu + np.linspace(0, 100 * sigma, 5)[:, None] / math.sqrt(d)  # distances 0 .. 100 sigma
    log_norm = d * math.log(sigma * math.sqrt(2 * np.pi))
    expected = -np.sum((x - mu) ** 2, 1) / (2 * sigma**2) - log_norm
    np.testing.assert_allclose(log_likelihoods(mu, x, [sigma])[0], expected, rtol=1e-9)


def test_parzen_on_gaussian_samples_approaches_the_smoothed_gaussian() -> None:
    """Centres ~ N(0, s^2 I), test ~ N(0, s^2 I): as N grows the Parzen density is
    N(0, (s^2 + sigma^2) I), whose expected log-likelihood has a closed form."""
    d, s, sigma, n, m = 2, 1.0, 0.5, 10_000, 2_000
    centres, test = gaussian(n, d, 2, scale=s), gaussian(m, d, 3, scale=s)
    v = s * s + sigma * sigma
    expected = -d / 2 * math.log(2 * math.pi * v) - d * s * s / (2 * v)
    mean, se = parzen_log_likelihood(centres, test, sigma)
    # Sampling error of the test mean (se) plus the finite-N error of the kernel estimate:
    # its relative error is ~1/sqrt(N sigma^d) ~ 2% with 10k centres.
    assert abs(mean - expected) < 4 * se + 0.02, (mean, expected, se)
    # The standard error is std/sqrt(M) of the per-point values.
    ll = log_likelihoods(centres, test, [sigma])[0]
    assert se == pytest.approx(ll.std() / math.sqrt(m))


def test_sigma_is_chosen_on_validation_and_the_protocol_uses_the_papers_grid() -> None:
    np.testing.assert_allclose(DEFAULT_SIGMAS, np.logspace(-1, 0, 10))
    centres, valid, test = gaussian(500, 3, 4), gaussian(300, 3, 5), gaussian(300, 3, 6)
    result = parzen_evaluation(centres, valid, test)
    means = log_likelihoods(centres, valid, DEFAULT_SIGMAS).mean(1)
    assert result.sigma == DEFAULT_SIGMAS[int(np.argmax(means))]
    assert (result.sigma, result.validation) == select_sigma(centres, valid)
    assert list(result.validation.values()) == pytest.approx(list(means))
    assert (result.mean, result.standard_error) == pytest.approx(
        parzen_log_likelihood(centres, test, result.sigma)
    )
    assert (result.num_samples, result.num_test) == (500, 300)
    # 3-d unit Gaussian, 500 centres: the best width is the grid's top end region, not 0.1.
    assert result.sigma > 0.2


def test_parzen_rewards_memorisation() -> None:
    """Theis et al. 2016: centres that *are* the test points beat any honest model."""
    train, test = gaussian(1000, 10, 7), gaussian(200, 10, 8)
    honest = parzen_evaluation(train, test, test).mean
    copied = parzen_evaluation(np.concatenate([train, test]), test, test)
    assert copied.sigma == pytest.approx(0.1) and copied.mean > honest + 10


def test_parzen_rejects_mismatched_dimensions() -> None:
    with pytest.raises(ValueError, match="dimensions"):
        log_likelihoods(gaussian(5, 3, 0), gaussian(5, 4, 0), [1.0])


# --- Fréchet distance and KID ---------------------------------------------------------


def test_frechet_closed_form_for_diagonal_gaussians() -> None:
    a, b = np.array([1.0, 4.0, 9.0]), np.array([4.0, 4.0, 1.0])
    mu1, mu2 = np.zeros(3), np.array([1.0, 2.0, 0.0])
    expected = 5.0 + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)  # |dmu|^2 + sum (sqrt a - sqrt b)^2
    got = frechet_distance_from_statistics(mu1, np.diag(a), mu2, np.diag(b))
    assert got == pytest.approx(expected, rel=1e-9)
    assert frechet_distance_from_statistics(mu1, np.diag(a), mu1, np.diag(a)) == pytest.approx(
        0, abs=1e-9
    )


def test_frechet_same_distribution_is_near_zero_and_different_is_large() -> None:
    d, n = 8, 4000
    x, y = gaussian(n, d, 10), gaussian(n, d, 11)
    # Finite-sample bias: E[FD] of two N-samples of N(0, I_d) is ~ d/N (means) + d(d+1)/(4N)
    # (covariances) ~ 0.011 here; allow several times that.
    same = frechet_distance(x, y)
    assert 0 <= same < 0.05
    shifted = frechet_distance(x, gaussian(n, d, 12, mean=1.0))  # |dmu|^2 = d = 8
    assert shifted == pytest.approx(d, rel=0.05)
    wider = frechet_distance(x, gaussian(n, d, 13, scale=2.0))  # d * (2 - 1)^2 = 8
    assert wider == pytest.approx(d, rel=0.05)


def test_frechet_survives_fewer_samples_than_dimensions() -> None:
    x, y = gaussian(20, 50, 14), gaussian(20, 50, 15)  # singular covariances
    assert np.isfinite(frechet_distance(x, y))


def test_kid_is_unbiased_near_zero_for_one_distribution_and_large_for_two() -> None:
    d = 16
    x, y = gaussian(2000, d, 20), gaussian(2000, d, 21)
    same = kernel_distance(x, y, num_subsets=20, subset_size=500)
    # Unbiased: the mean over subsets is within a few subset standard errors of 0.
    assert abs(same.mean) < 4 * same.std / math.sqrt(same.num_subsets) + 1e-3
    diff = kernel_distance(x, gaussian(2000, d, 22, mean=0.5), num_subsets=20, subset_size=500)
    assert diff.mean > 20 * (abs(same.mean) + same.std)
    assert (diff.subset_size, diff.num_subsets) == (500, 20)


def test_kid_one_subset_equals_the_textbook_unbiased_mmd() -> None:
    x, y = gaussian(30, 4, 23), gaussian(30, 4, 24, mean=0.3)

    def k(a: np.ndarray, b: np.ndarray) -> float:
        return (a @ b / 4 + 1) ** 3

    m = len(x)
    kxx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    kyy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    kxy = sum(k(x[i], y[j]) for i in range(m) for j in range(m)) / (m * m)
    got = kernel_distance(x, y, num_subsets=1, subset_size=m)  # the subset is a permutation
    assert got.mean == pytest.approx(kxx + kyy - 2 * kxy, rel=1e-9)
    assert kernel_distance(x[:5], y, subset_size=1000).subset_size == 5  # capped


# --- classifier two-sample test ---------------------------------------------------------


def test_c2st_on_features_is_chance_for_one_distribution_and_high_for_two() -> None:
    torch.manual_seed(123)
    before = torch.get_rng_state()
    x, y = gaussian(1000, 10, 30), gaussian(1000, 10, 31)
    same = classifier_two_sample_test(x, y, epochs=10)
    assert torch.equal(torch.get_rng_state(), before)  # the caller's RNG is untouched
    assert same.n == 1000
    assert abs(same.accuracy - 0.5) < 3.5 * 0.5 / math.sqrt(same.n)  # Binomial(n, 1/2) / n
    assert same.p_value > 1e-3
    # Means 1 apart in each of 10 dimensions: the Bayes classifier is right with probability
    # Phi(sqrt(10) / 2) = 0.943; a trained MLP gets within a few standard errors of it.
    diff = classifier_two_sample_test(x, gaussian(1000, 10, 32, mean=1.0), epochs=10)
    bayes = stats.norm.cdf(math.sqrt(10) / 2)
    assert bayes - 0.04 < diff.accuracy <= bayes + 3 * diff.standard_error
    assert diff.p_value < 1e-10
    assert classifier_two_sample_test(x, y, epochs=10) == same  # deterministic for a seed


def test_c2st_on_images_spots_a_shade_of_grey() -> None:
    gen = torch.Generator().manual_seed(0)
    real = torch.rand(200, 1, 8, 8, generator=gen)
    fake_same = torch.rand(200, 1, 8, 8, generator=gen)
    fake_off = torch.rand(200, 1, 8, 8, generator=gen) * 0.6  # darker: mean 0.3, not 0.5
    same = classifier_two_sample_test(real, fake_same, epochs=4)
    assert abs(same.accuracy - 0.5) < 3.5 * 0.5 / math.sqrt(same.n)
    # The mean of 64 pixels alone separates them (means 0.5 and 0.3, sds 0.036 and 0.022).
    assert classifier_two_sample_test(real, fake_off, epochs=8).accuracy > 0.9
    uint8_hwc = (real.permute(0, 2, 3, 1) * 255).to(torch.uint8)  # to_uint8's layout
    assert classifier_two_sample_test(uint8_hwc, uint8_hwc, epochs=1).n == 200


# --- precision and recall ---------------------------------------------------------------


def test_precision_recall_identical_sets_are_perfect() -> None:
    x = gaussian(300, 5, 40)
    assert precision_recall(x, x.copy(), k=3)[:2] == (1.0, 1.0)


def test_precision_recall_separates_fidelity_from_coverage() -> None:
    real = gaussian(2000, 4, 41)
    same = precision_recall(real, gaussian(2000, 4, 42), k=3, batch_size=300)
    # k-NN balls of one distribution cover most of a fresh sample of it (Kynkäänniemi et
    # al. report ~0.7-0.8 for k=3 on matched sets in low dimension).
    assert same.precision > 0.6 and same.recall > 0.6
    collapsed = precision_recall(real, gaussian(2000, 4, 43, scale=0.2), k=3)  # one mode
    assert collapsed.precision > 0.95 and collapsed.recall < 0.2
    off = precision_recall(real, gaussian(2000, 4, 44, mean=4.0), k=3)  # elsewhere
    assert off.precision < 0.05 and off.recall < 0.05


# --- nearest neighbours and the memorisation picture ------------------------------------


def test_nearest_neighbours_finds_exact_copies_at_distance_zero() -> None:
    train = np.random.default_rng(50).integers(0, 256, size=(200, 8, 8, 3)).astype(np.uint8)
    pick = np.array([5, 17, 199, 0])
    nn = nearest_neighbours(train[pick], train, batch_size=3)
    np.testing.assert_array_equal(nn.index, pick)
    np.testing.assert_array_equal(nn.distance, 0.0)
    # A query nudged by one grey level in one pixel: distance exactly 1.
    q = train[pick].astype(np.int64)
    q[:, 0, 0, 0] = np.where(q[:, 0, 0, 0] < 255, q[:, 0, 0, 0] + 1, 254)
    nn = nearest_neighbours(q, train)
    np.testing.assert_array_equal(nn.index, pick)
    np.testing.assert_allclose(nn.distance, 1.0)


def test_memorisation_check_flags_copies_and_draws_pairs(tmp_path: Path) -> None:
    rng = np.random.default_rng(51)
    train = rng.integers(0, 256, size=(100, 12, 12, 4)).astype(np.uint8)
    held_out = rng.integers(0, 256, size=(40, 12, 12, 4)).astype(np.uint8)
    # 30 new images exactly as far from train as real held-out ones, and 10 copies.
    generated = np.concatenate([held_out[:30], train[:10]])
    report = memorization_check(generated, train, held_out)
    summary = report.summary()
    assert summary["exact_copies"] == 10 and summary["generated_min"] == 0
    # Below the held-out 1% quantile: the 10 copies, and at most the one closest new image.
    assert 10 / 40 <= report.copy_fraction(0.01) <= 11 / 40
    assert summary["held_out_min"] > 0 and summary["median_ratio"] > 0.5
    path = save_nearest_pairs_png(generated, train, report.generated, tmp_path / "pairs.png", k=8)
    with Image.open(path) as image:
        assert image.size[0] > 0 and image.mode == "RGB"
    grey = rng.integers(0, 256, size=(5, 28, 28)).astype(np.uint8)  # MNIST's [N, H, W]
    save_nearest_pairs_png(grey, grey, nearest_neighbours(grey, grey), tmp_path / "g.png")


# --- the FID Inception network, with a stand-in for the real weights --------------------


@pytest.fixture(scope="module")
def standin_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Random weights in the real file's layout (names, shapes): the same interface."""
    from safetensors.torch import save_file

    torch.manual_seed(0)
    model = FIDInceptionV3()
    path = tmp_path_factory.mktemp("inception") / "standin.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    return path


def test_inception_loads_only_a_file_with_the_expected_hash(standin_weights: Path) -> None:
    assert len(FIDInceptionV3().state_dict()) == 566  # as the published .pth file
    with pytest.raises(InceptionWeightsError, match="sha256"):
        load_fid_inception(standin_weights)  # the default hash is the real file's
    with pytest.raises(FileNotFoundError, match="Nothing is downloaded"):
        load_fid_inception(standin_weights.parent / "pt_inception-2015-12-05-6726825d.pth")


@pytest.mark.slow  # a 299x299 Inception forward: seconds on 2 busy cores
def test_inception_standin_gives_pool3_features_and_fd_zero_on_itself(
    standin_weights: Path,
) -> None:
    model = load_fid_inception(standin_weights, sha256=sha256_file(standin_weights))
    assert not model.training and not any(p.requires_grad for p in model.parameters())
    images = torch.rand(1, 1, 28, 28, generator=torch.Generator().manual_seed(1))  # grey
    feats = inception_features(model, images)
    assert feats.shape == (1, 2048) and feats.dtype == torch.float64
    assert torch.isfinite(feats).all()
    f = feats.repeat(2, 1).numpy()
    assert frechet_distance(f, f) == pytest.approx(0, abs=1e-6)
    with pytest.raises(ValueError, match="channels"):
        model(torch.rand(1, 4, 8, 8))
