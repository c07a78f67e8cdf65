"""The evaluation metrics by name: each reads one ``EvalContext`` and returns its table rows
and headline numbers (or ``None`` where it does not apply), in the order the table shows.

As in stylegan2-ada-pytorch's metric registry, adding a metric is one function and one
entry in ``METRICS``; the protocol (``training.evaluation.protocol``) prepares the images
once and runs them all.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from model_store import Generator, Manifest, to_uint8
from model_store.networks.features import FeatureNet
from model_store.store import LoadedFeatures
from training.data import ImageDataset
from training.evaluation.table import Row
from training.metrics import (
    Neighbours,
    classifier_two_sample_test,
    frechet_distance,
    kernel_distance,
    memorization_check,
    nearest_neighbours,
    parzen_evaluation,
    precision_recall,
    save_nearest_pairs_png,
)
from training.metrics.inception import FID_INCEPTION_SHA256, inception_features, load_fid_inception
from training.samples import generate

PARZEN_SAMPLES = 10_000  # the seed paper's number of generated samples


@dataclass(frozen=True)
class EvalOptions:
    seed: int = 0  # shuffles R into halves; trains the C2ST classifier
    seed_offset: int = 1_000_000  # G's seeds start here (sample grids use 0, 1, ...)
    max_real: int = 0  # cap on |R| (0 = all): quicker, noisier
    kid_subsets: int = 100
    kid_subset_size: int = 1000
    pr_k: int = 3
    c2st_epochs: int = 8
    parzen_samples: int = PARZEN_SAMPLES
    batch_size: int = 256
    inception: Path | None = None
    inception_sha256: str = FID_INCEPTION_SHA256
    columns: int = 10  # sample grid: columns per category row


@dataclass(frozen=True)
class EvalContext:
    """Everything a metric may read, prepared once by the protocol."""

    generator: Generator
    manifest: Manifest
    features: LoadedFeatures
    reference: ImageDataset  # R: the training data as trained on, shuffled
    idx1: np.ndarray  # rows of R in half R1
    idx2: np.ndarray  # rows of R in half R2
    real: torch.Tensor  # R as [N, C, H, W] in [-1, 1] (generator space)
    fake: torch.Tensor  # |R2| generated images [-1, 1], asked for R2's classes
    labels2: torch.Tensor | None  # R2's classes (conditional models)
    opt: EvalOptions
    out: Path  # report folder, for pictures
    valid: ImageDataset | None = None  # Parzen sigma
    test: ImageDataset | None = None  # Parzen LL; held-out reals for memorisation

    @property
    def space(self) -> str:
        """The feature space every FD/KID/PR number is named after."""
        return f"{self.features.manifest.name} v{self.features.manifest.version}"

    @property
    def real01(self) -> torch.Tensor:
        return (self.real + 1) / 2

    @property
    def fake01(self) -> torch.Tensor:
        return (self.fake + 1) / 2


@dataclass
class Section:
    """One metric's contribution: table rows, headline numbers, files it wrote."""

    rows: list[Row]
    headline: dict[str, Any]
    files: dict[str, str] = field(default_factory=dict)


# --- images in, features out ----------------------------------------------------------


def real_uint8(ds: ImageDataset) -> np.ndarray:
    return ds.images.permute(0, 2, 3, 1).contiguous().numpy()


@torch.no_grad()
def features_of(net: FeatureNet, images: torch.Tensor, batch_size: int) -> np.ndarray:
    """[N, C, H, W] in [-1, 1] -> float64 features [N, D]."""
    parts = [net.features(images[i : i + batch_size]) for i in range(0, len(images), batch_size)]
    return torch.cat(parts).double().numpy()


@torch.no_grad()
def predicted_classes(net: FeatureNet, images: torch.Tensor, batch_size: int) -> torch.Tensor:
    parts = [net(images[i : i + batch_size]).argmax(1) for i in range(0, len(images), batch_size)]
    return torch.cat(parts)


def flatten_alpha(images01: torch.Tensor) -> torch.Tensor:
    """[N, C, H, W] in [0, 1] (premultiplied RGBA, RGB or grey) -> RGB/grey on white."""
    if images01.shape[1] != 4:
        return images01
    rgb, a = images01[:, :3], images01[:, 3:]
    return rgb + (1 - a)  # premultiplied over white


# --- the metrics ----------------------------------------------------------------------


def distribution_rows(
    space: str, fake: np.ndarray, real1: np.ndarray, real2: np.ndarray, opt: EvalOptions
) -> Section:
    """FD, KID, precision and recall of fake vs real2, each beside real1 vs real2."""
    fd, fd_floor = frechet_distance(fake, real2), frechet_distance(real1, real2)
    size = min(opt.kid_subset_size, len(fake), len(real1), len(real2))
    kid = kernel_distance(fake, real2, opt.kid_subsets, size, opt.seed)
    kid_floor = kernel_distance(real1, real2, opt.kid_subsets, size, opt.seed)
    pr = precision_recall(real2, fake, k=opt.pr_k)
    pr_floor = precision_recall(real2, real1, k=opt.pr_k)
    rows = [
        Row(f"FD ({space})", f"{fd:.2f}", f"{fd_floor:.2f}", "lower is better"),
        Row(
            f"KID x 1000 ({space})",
            f"{kid.mean * 1e3:.2f} ± {kid.std * 1e3:.2f}",
            f"{kid_floor.mean * 1e3:.2f} ± {kid_floor.std * 1e3:.2f}",
            f"{kid.num_subsets} subsets of {kid.subset_size}; unbiased, 0 = same",
        ),
        Row(
            f"Precision, k={pr.k} ({space})",
            f"{pr.precision:.3f}",
            f"{pr_floor.precision:.3f}",
            "share of generated images on the real manifold",
        ),
        Row(
            f"Recall, k={pr.k} ({space})",
            f"{pr.recall:.3f}",
            f"{pr_floor.recall:.3f}",
            "share of real images on the generated manifold",
        ),
    ]
    headline = {
        "fd": round(fd, 4),
        "fd_real_floor": round(fd_floor, 4),
        "kid": round(kid.mean, 6),
        "kid_std": round(kid.std, 6),
        "kid_real_floor": round(kid_floor.mean, 6),
        "precision": round(pr.precision, 4),
        "recall": round(pr.recall, 4),
        "precision_real_floor": round(pr_floor.precision, 4),
        "recall_real_floor": round(pr_floor.recall, 4),
    }
    return Section(rows, headline)


def feature_distribution(ctx: EvalContext) -> Section:
    """FD/KID/precision/recall in the frozen feature network's space."""
    net, n = ctx.features.network, ctx.opt.batch_size
    fx = features_of(net, ctx.fake, n)
    r1, r2 = features_of(net, ctx.real[ctx.idx1], n), features_of(net, ctx.real[ctx.idx2], n)
    return distribution_rows(ctx.space, fx, r1, r2, ctx.opt)


def class_agreement(ctx: EvalContext) -> Section | None:
    """Does the feature network's classifier name the class each image was asked for?"""
    net, n, labels2 = ctx.features.network, ctx.opt.batch_size, ctx.labels2
    if labels2 is None or net.config.num_classes != ctx.generator.num_classes:
        return None
    agree = float((predicted_classes(net, ctx.fake, n) == labels2).double().mean())
    real_labels = ctx.reference.labels[ctx.idx2]
    acc = float((predicted_classes(net, ctx.real[ctx.idx2], n) == real_labels).double().mean())
    held = ctx.features.manifest.metrics.get("held_out_accuracy")
    note = f"{ctx.space} classifier; its accuracy on unseen real designs: {held}"
    row = Row("Class agreement (asked-for class recognised)", f"{agree:.1%}", f"{acc:.1%}", note)
    headline = {"class_agreement": round(agree, 4), "class_agreement_real": round(acc, 4)}
    return Section([row], headline)


def c2st(ctx: EvalContext) -> Section:
    """A fresh CNN on pixels ([0, 1]): generated vs R2, beside R1 vs R2."""
    real01, epochs, seed = ctx.real01, ctx.opt.c2st_epochs, ctx.opt.seed
    test = classifier_two_sample_test(real01[ctx.idx2], ctx.fake01, epochs=epochs, seed=seed)
    floor = classifier_two_sample_test(real01[ctx.idx2], real01[ctx.idx1], epochs=epochs, seed=seed)
    row = Row(
        "C2ST accuracy (fresh pixel CNN)",
        f"{test.accuracy:.1%} ± {test.standard_error:.1%}",
        f"{floor.accuracy:.1%} ± {floor.standard_error:.1%}",
        f"held-out n={test.n}; 50% = indistinguishable, 100% = trivially fake",
    )
    headline = {
        "c2st_accuracy": round(test.accuracy, 4),
        "c2st_real_floor": round(floor.accuracy, 4),
    }
    return Section([row], headline)


def memorisation(ctx: EvalContext) -> Section:
    """Nearest training image per generated one (pixels, L2), beside held-out reals'
    distances to the same half R1; exact copies of any image of R; the closest pairs."""
    scale, n = 255.0, ctx.opt.batch_size  # distances reported for pixels in [0, 1]
    fake_u8, real_u8 = to_uint8(ctx.fake, ctx.manifest.alpha).numpy(), real_uint8(ctx.reference)
    if ctx.test is not None:
        held_u8, held_name = real_uint8(ctx.test), f"test set ({len(ctx.test)})"
    else:
        held_u8, held_name = real_u8[ctx.idx2], "R2"
    report = memorization_check(fake_u8, real_u8[ctx.idx1], held_u8, n).summary()
    to_all = nearest_neighbours(fake_u8, real_u8, n)
    in_unit = Neighbours(to_all.index, to_all.distance / scale)  # captions in [0, 1] units
    save_nearest_pairs_png(fake_u8, real_u8, in_unit, ctx.out / "nearest.png", k=24, columns=4)
    fake_median, real_median = report["generated_median"] / scale, report["held_out_median"] / scale
    near, copies = report["copy_fraction_q01"], int((to_all.distance == 0).sum())
    rows = [
        Row(
            "Nearest training image, median L2 (pixels in [0, 1])",
            f"{fake_median:.3f}",
            f"{real_median:.3f}",
            f"generated -> R1 vs {held_name} -> R1",
        ),
        Row(
            "Closer to R1 than 99% of real images are",
            f"{near:.1%}",
            "1.0%",
            "a high share would mean copying",
        ),
        Row("Exact copies of a training image", str(copies), "0", f"of {len(fake_u8)}"),
    ]
    headline = {
        "nn_median": round(fake_median, 4),
        "nn_median_real": round(real_median, 4),
        "nn_median_ratio": round(report["median_ratio"], 4),
        "near_copy_fraction": round(near, 4),
        "exact_copies": copies,
    }
    return Section(rows, headline, {"nearest": "nearest.png"})


def parzen(ctx: EvalContext) -> Section | None:
    """The seed paper's estimate on pixels in [0, 1]: sigma on valid, mean LL on test."""
    if ctx.valid is None or ctx.test is None:
        return None
    g, opt, valid, test = ctx.generator, ctx.opt, ctx.valid, ctx.test
    labels = None
    if g.num_classes:  # classes in proportion to the test set's
        counts = torch.bincount(test.labels, minlength=g.num_classes).double()
        gen = torch.Generator().manual_seed(opt.seed)
        labels = torch.multinomial(counts, opt.parzen_samples, replacement=True, generator=gen)
    seeds = list(range(opt.seed_offset, opt.seed_offset + opt.parzen_samples))
    samples = (generate(g, seeds, labels, opt.batch_size) + 1) / 2
    result = parzen_evaluation(
        samples.flatten(1).double(),
        valid.images.flatten(1).double() / 255,
        test.images.flatten(1).double() / 255,
        batch_size=opt.batch_size,
    )
    row = Row(
        "Parzen window log-likelihood (nats)",
        f"{result.mean:.1f} ± {result.standard_error:.1f}",
        "",
        f"{result.num_samples} samples, sigma={result.sigma:.3f} chosen on {len(valid)} "
        f"validation images, {result.num_test} test images",
    )
    headline = {
        "parzen_ll": round(result.mean, 2),
        "parzen_se": round(result.standard_error, 2),
        "parzen_sigma": round(result.sigma, 4),
    }
    return Section([row], headline)


def inception(ctx: EvalContext) -> Section | None:
    """Standard FID/KID from a local pt_inception-2015-12-05 file (never downloaded)."""
    opt = ctx.opt
    if opt.inception is None:
        return None
    model = load_fid_inception(opt.inception, opt.inception_sha256)
    images = (ctx.fake01, ctx.real01[ctx.idx1], ctx.real01[ctx.idx2])
    feats = [inception_features(model, flatten_alpha(x)).numpy() for x in images]
    section = distribution_rows("Inception-v3 pool3, pytorch-fid", *feats, opt)
    rows = [r for r in section.rows if r.metric.startswith(("FD", "KID"))]
    rows[0].metric = rows[0].metric.replace("FD (", "FID (")
    rows[1].metric = rows[1].metric.replace("KID x 1000 (", "Inception KID x 1000 (")
    h = section.headline
    return Section(rows, {"fid_inception": h["fd"], "kid_inception": h["kid"]})


# In table order. A metric returns None where it does not apply (no classes, no Parzen
# sets, no Inception weights).
METRICS: dict[str, Callable[[EvalContext], Section | None]] = {
    "features": feature_distribution,
    "class_agreement": class_agreement,
    "c2st": c2st,
    "memorisation": memorisation,
    "parzen": parzen,
    "inception": inception,
}
