"""``python -m training evaluate <model>``: how real do a stored generator's images look?

The protocol (every number is comparable because every number has a floor beside it):

- The reference set R is the model's training data (``--data``), with the same skin-tone
  filter the model was trained with. It is shuffled (``--seed``) and cut into halves R1, R2.
- G: as many generated images as R2 holds, from seeds 1,000,000 + 0, 1, ...; a
  conditional model is asked for exactly R2's classes, so class frequencies match.
- FD, KID and precision/recall in the feature space of a frozen network from the store
  (``--features``, default ``emoji-features``), named in every output, and a classifier
  two-sample test (a fresh small CNN on pixels): G vs R2, beside the floor R1 vs R2 (two
  real samples of the same size, which is what "indistinguishable" looks like).
- Class agreement (conditional models): the feature network's classifier names the class
  each image was asked for, beside its accuracy on real images of R2.
- Memorisation: each generated image's nearest training image (pixels, L2); the distances
  G -> R1 beside R2 -> R1, exact copies of R, and a picture of the closest pairs.
- Parzen log-likelihood (seed paper protocol) when ``--valid`` and ``--test`` are given, and
  Inception FID/KID when ``--inception`` names a local weights file.

It writes ``report.md``, ``metrics.json`` and PNGs (samples per category, nearest pairs,
the metric table) to ``--out``, and stores the headline numbers in the model's manifest
(``metrics["evaluation"]``), which ``GET /models`` shows.
"""

from __future__ import annotations

import argparse
import json
import platform
import shlex
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from model_store import DEFAULT_ROOT, Generator, ModelStore, sha256_file, to_uint8
from model_store.networks.features import FeatureNet
from model_store.store import LoadedFeatures
from training.data import ImageDataset, load_dataset
from training.features import add_features_command
from training.metrics import (
    Neighbours,
    classifier_two_sample_test,
    frechet_distance,
    kernel_distance,
    nearest_neighbours,
    parzen_evaluation,
    precision_recall,
    save_nearest_pairs_png,
)
from training.metrics.inception import FID_INCEPTION_SHA256, inception_features, load_fid_inception
from training.mnist import add_mnist_command
from training.samples import generate, make_grid

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


@dataclass
class Row:
    """One line of the metric table."""

    metric: str
    value: str
    floor: str  # the same metric for two real samples (or what to compare with)
    note: str = ""


@dataclass
class Evaluation:
    headline: dict[str, Any] = field(default_factory=dict)  # goes into the manifest
    rows: list[Row] = field(default_factory=list)
    files: dict[str, str] = field(default_factory=dict)


# --- images in, features out ----------------------------------------------------------


def display_uint8(images: torch.Tensor, alpha: str) -> np.ndarray:
    """[-1, 1] generator-space images -> uint8 [N, H, W, C] as PNGs would show them."""
    return to_uint8(images, alpha).numpy()


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
) -> tuple[list[Row], dict[str, Any]]:
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
    return rows, headline


def c2st_row(
    fake01: torch.Tensor, real1: torch.Tensor, real2: torch.Tensor, opt: EvalOptions
) -> tuple[Row, dict[str, Any]]:
    """A fresh CNN on pixels ([0, 1]): generated vs real2, beside real1 vs real2."""
    test = classifier_two_sample_test(real2, fake01, epochs=opt.c2st_epochs, seed=opt.seed)
    floor = classifier_two_sample_test(real2, real1, epochs=opt.c2st_epochs, seed=opt.seed)
    row = Row(
        "C2ST accuracy (fresh pixel CNN)",
        f"{test.accuracy:.1%} ± {test.standard_error:.1%}",
        f"{floor.accuracy:.1%} ± {floor.standard_error:.1%}",
        f"held-out n={test.n}; 50% = indistinguishable, 100% = trivially fake",
    )
    return row, {
        "c2st_accuracy": round(test.accuracy, 4),
        "c2st_real_floor": round(floor.accuracy, 4),
    }


def memorisation(
    fake_u8: np.ndarray,
    real_u8: np.ndarray,
    half1: np.ndarray,
    held_out_u8: np.ndarray,
    held_out_name: str,
    out: Path,
    batch_size: int,
) -> tuple[list[Row], dict[str, Any]]:
    """Nearest training image per generated one (pixels); distances in [0, 1] units."""
    scale = 255.0
    to_all = nearest_neighbours(fake_u8, real_u8, batch_size)
    fake_to_half = nearest_neighbours(fake_u8, real_u8[half1], batch_size).distance / scale
    real_to_half = nearest_neighbours(held_out_u8, real_u8[half1], batch_size).distance / scale
    in_unit = Neighbours(to_all.index, to_all.distance / scale)  # captions in [0, 1] units
    save_nearest_pairs_png(fake_u8, real_u8, in_unit, out / "nearest.png", k=24, columns=4)
    ratio = float(np.median(fake_to_half) / max(np.median(real_to_half), 1e-12))
    copies = int((to_all.distance == 0).sum())
    near = float(np.mean(fake_to_half < np.quantile(real_to_half, 0.01)))
    rows = [
        Row(
            "Nearest training image, median L2 (pixels in [0, 1])",
            f"{np.median(fake_to_half):.3f}",
            f"{np.median(real_to_half):.3f}",
            f"generated -> R1 vs {held_out_name} -> R1",
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
        "nn_median": round(float(np.median(fake_to_half)), 4),
        "nn_median_real": round(float(np.median(real_to_half)), 4),
        "nn_median_ratio": round(ratio, 4),
        "near_copy_fraction": round(near, 4),
        "exact_copies": copies,
    }
    return rows, headline


def parzen_rows(
    generator: Generator, valid: ImageDataset, test: ImageDataset, opt: EvalOptions
) -> tuple[list[Row], dict[str, Any]]:
    """The seed paper's estimate on pixels in [0, 1]: sigma on valid, mean LL on test."""
    labels = None
    if generator.num_classes:  # classes in proportion to the test set's
        counts = torch.bincount(test.labels, minlength=generator.num_classes).double()
        gen = torch.Generator().manual_seed(opt.seed)
        labels = torch.multinomial(counts, opt.parzen_samples, replacement=True, generator=gen)
    seeds = list(range(opt.seed_offset, opt.seed_offset + opt.parzen_samples))
    samples = (generate(generator, seeds, labels, opt.batch_size) + 1) / 2
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
    return [row], headline


def inception_rows(
    fake01: torch.Tensor, real1: torch.Tensor, real2: torch.Tensor, opt: EvalOptions
) -> tuple[list[Row], dict[str, Any]]:
    """Standard FID/KID from a local pt_inception-2015-12-05 file (never downloaded)."""
    model = load_fid_inception(opt.inception, opt.inception_sha256)
    feats = [inception_features(model, flatten_alpha(x)).numpy() for x in (fake01, real1, real2)]
    rows, headline = distribution_rows("Inception-v3 pool3, pytorch-fid", *feats, opt)
    rows = [r for r in rows if r.metric.startswith(("FD", "KID"))]
    rows[0].metric = rows[0].metric.replace("FD (", "FID (")
    rows[1].metric = rows[1].metric.replace("KID x 1000 (", "Inception KID x 1000 (")
    return rows, {"fid_inception": headline["fd"], "kid_inception": headline["kid"]}


# --- the run ----------------------------------------------------------------------------


def reference_set(data: Path, recipe: dict[str, Any], max_real: int, seed: int) -> ImageDataset:
    """The model's training data as it was trained on (skin-tone filter), shuffled."""
    ds = load_dataset(data)
    if recipe.get("skin_tones", "drop") == "drop" and bool(ds.skin_tone.any()):
        ds = ds.subset(ds.skin_tone == 0)
    order = torch.from_numpy(np.random.default_rng(seed).permutation(len(ds)))
    if max_real:
        order = order[:max_real]
    return ds.subset(order)


def evaluate_model(
    store: ModelStore,
    name: str,
    version: int | str,
    data: Path,
    features: LoadedFeatures,
    out: Path,
    opt: EvalOptions,
    valid: Path | None = None,
    test: Path | None = None,
) -> Evaluation:
    started = time.perf_counter()
    model = store.load(name, version)
    m, g, net = model.manifest, model.generator, features.network
    space = f"{features.manifest.name} v{features.manifest.version}"
    out.mkdir(parents=True, exist_ok=True)
    ds = reference_set(data, m.training.recipe, opt.max_real, opt.seed)
    if (ds.channels, ds.resolution) != (m.channels, m.resolution):
        raise SystemExit(
            f"error: {data} holds {ds.channels}x{ds.resolution}px images, the model makes "
            f"{m.channels}x{m.resolution}px ones"
        )
    half = len(ds) // 2
    if half < 2 * opt.pr_k + 2:
        raise SystemExit(f"error: {data}: {len(ds)} images are too few to evaluate with")
    idx1, idx2 = np.arange(half), np.arange(half, 2 * half)
    real = ds.to_float(premultiply=ds.channels == 4)  # [N, C, R, R] in [-1, 1]
    labels2 = ds.labels[idx2] if g.num_classes else None
    seeds = list(range(opt.seed_offset, opt.seed_offset + half))
    fake = generate(g, seeds, labels2, opt.batch_size)  # [half, C, R, R]
    ev = Evaluation()

    fx = features_of(net, fake, opt.batch_size)
    r1, r2 = features_of(net, real[idx1], opt.batch_size), features_of(net, real[idx2], 256)
    rows, headline = distribution_rows(space, fx, r1, r2, opt)
    ev.rows += rows
    ev.headline |= headline
    if g.num_classes and net.config.num_classes == g.num_classes:
        agree = float((predicted_classes(net, fake, opt.batch_size) == labels2).double().mean())
        acc = float(
            (predicted_classes(net, real[idx2], opt.batch_size) == ds.labels[idx2]).double().mean()
        )
        held = features.manifest.metrics.get("held_out_accuracy")
        note = f"{space} classifier; its accuracy on unseen real designs: {held}"
        ev.rows.append(
            Row("Class agreement (asked-for class recognised)", f"{agree:.1%}", f"{acc:.1%}", note)
        )
        ev.headline |= {"class_agreement": round(agree, 4), "class_agreement_real": round(acc, 4)}

    fake01, real01 = (fake + 1) / 2, (real + 1) / 2
    row, headline = c2st_row(fake01, real01[idx1], real01[idx2], opt)
    ev.rows.append(row)
    ev.headline |= headline

    fake_u8, real_u8 = display_uint8(fake, m.alpha), real_uint8(ds)
    if test is not None:
        test_ds = load_dataset(test)
        held_u8, held_name = real_uint8(test_ds), f"test set ({len(test_ds)})"
    else:
        held_u8, held_name = real_u8[idx2], "R2"
    rows, headline = memorisation(fake_u8, real_u8, idx1, held_u8, held_name, out, 256)
    ev.rows += rows
    ev.headline |= headline
    ev.files["nearest"] = "nearest.png"

    if valid is not None and test is not None:
        rows, headline = parzen_rows(g, load_dataset(valid), load_dataset(test), opt)
        ev.rows += rows
        ev.headline |= headline
    if opt.inception is not None:
        rows, headline = inception_rows(fake01, real01[idx1], real01[idx2], opt)
        ev.rows += rows
        ev.headline |= headline

    category_grid(g, m.alpha, list(m.class_names), opt.columns).save(out / "samples.png")
    ev.files["samples"] = "samples.png"
    table_png(ev.rows, f"{m.ref}: {len(fake)} generated vs {half} real").save(out / "metrics.png")
    ev.files["metrics"] = "metrics.png"
    ev.headline |= {
        "feature_space": space,
        "num_generated": len(fake),
        "num_real": half,
        "data": ds.describe(),
        "data_sha256": sha256_file(data),
        "seed": opt.seed,
        "evaluated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "wall_time_s": round(time.perf_counter() - started, 1),
        "command": "python -m training " + shlex.join(sys.argv[1:]),
    }
    return ev


# --- pictures and the report --------------------------------------------------------------


def category_grid(g: Generator, alpha: str, class_names: list[str], columns: int) -> Image.Image:
    """One row per category (captioned), ``columns`` seeds each; a square for unconditional."""
    rows = len(class_names) if g.num_classes else columns
    labels = torch.arange(rows).repeat_interleave(columns) if g.num_classes else None
    seeds = list(range(rows * columns))
    tiles = display_uint8(generate(g, seeds, labels, 256), alpha)
    scale = max(1, 96 // tiles.shape[1])
    grid = make_grid(tiles, columns)
    grid = grid.resize((grid.width * scale, grid.height * scale), Image.Resampling.NEAREST)
    if not g.num_classes:
        return grid
    font = ImageFont.load_default(size=14)
    margin = 170
    sheet = Image.new("RGB", (grid.width + margin, grid.height), "white")
    sheet.paste(grid, (margin, 0))
    draw, row_h = ImageDraw.Draw(sheet), grid.height / rows
    for i, name in enumerate(class_names):
        draw.text((6, int(i * row_h + row_h / 2 - 8)), name, fill="black", font=font)
    return sheet


def table_png(rows: list[Row], title: str) -> Image.Image:
    """The metric table as a picture (for pages and issues that show images)."""
    font = ImageFont.load_default(size=15)
    header = Row("Metric", "Model", "Real vs real")
    cells = [[r.metric, r.value, r.floor] for r in [header, *rows]]
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    widths = [max(probe.textlength(c[j], font=font) for c in cells) + 24 for j in range(3)]
    line = 26
    image = Image.new("RGB", (int(sum(widths)) + 20, line * (len(cells) + 1) + 20), "white")
    draw = ImageDraw.Draw(image)
    draw.text((10, 8), title, fill="black", font=font)
    for i, cell_row in enumerate(cells):
        y = 10 + line * (i + 1)
        if i % 2 == 0:
            draw.rectangle([10, y - 3, image.width - 10, y + line - 5], fill=(242, 244, 248))
        x = 10.0
        for j, text in enumerate(cell_row):
            draw.text((x + 6, y), text, fill="black" if i else (40, 40, 120), font=font)
            x += widths[j]
    return image


def markdown_table(rows: list[Row]) -> str:
    lines = ["| Metric | Model | Real vs real | Note |", "|---|---|---|---|"]
    lines += [f"| {r.metric} | {r.value} | {r.floor} | {r.note} |" for r in rows]
    return "\n".join(lines)


def write_report(out: Path, manifest: Any, ev: Evaluation, data: Path) -> Path:
    h, t = ev.headline, manifest.training
    n_classes = len(manifest.class_names)
    kind = f"conditional on {n_classes} categories" if n_classes else "unconditional"
    size = f"{manifest.resolution}x{manifest.resolution}"
    trained = (
        f"trained {t.steps} steps ({t.images_seen} images) in {t.wall_time_s / 60:.1f} min on "
        f"{t.device}"
        if t.steps
        else "no training record in its manifest"
    )
    asked = "asked for R2's classes" if n_classes else "unconditional"
    text = f"""# Evaluation of {manifest.ref}

{manifest.description or ""}

- Model: `{manifest.architecture}`, {manifest.channels} channels, {size}, {kind};
  {trained}.
- Reference data: {h["data"]} (`{data}`, sha256 `{h["data_sha256"][:16]}…`), shuffled with
  seed {h["seed"]} into halves R1 and R2 of {h["num_real"]} images; {h["num_generated"]}
  generated images ({asked}).
- Feature space: **{h["feature_space"]}** (a frozen classifier trained on this data, stored in
  the model store). Numbers in it are not FID and do not compare with published FIDs.
- "Real vs real" is the same metric for R1 against R2: what indistinguishable looks like at
  this sample size (FD between two finite samples of one distribution is above 0).
- Evaluated {h["evaluated_at"]} on {platform.machine()} ({torch.get_num_threads()} torch
  threads) in {h["wall_time_s"]:.0f} s.

{markdown_table(ev.rows)}

## Samples, one row per category

![samples](samples.png)

## The closest generated images to the training set

Each pair: a generated image (left) and its nearest training image (right) among all of R,
with their L2 distance over all pixel values in [0, 1]; the closest pairs come first.

![nearest pairs](nearest.png)

## Reproduce

```
{h["command"]}
```
"""
    path = out / "report.md"
    path.write_text(text)
    (out / "metrics.json").write_text(json.dumps(h, indent=1) + "\n")
    return path


# --- command line ---------------------------------------------------------------------


def add_evaluate_commands(sub: argparse._SubParsersAction) -> None:
    """Register ``evaluate``, ``train-features`` and ``build-mnist`` on a subparser set."""
    p = sub.add_parser(
        "evaluate",
        help="measure a stored generator (FD/KID/precision/recall/C2ST/memorisation/Parzen)",
        description=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("model", help="model name in the store, e.g. emoji")
    p.add_argument("--version", default="latest", help="version number or latest")
    p.add_argument("--store", type=Path, default=DEFAULT_ROOT, help="model store folder")
    p.add_argument(
        "--data",
        type=Path,
        default=Path("data/emoji.dne.gz"),
        help="the data-set file the model was trained on (the reference set)",
    )
    p.add_argument("--features", default="emoji-features", help="feature network in the store")
    p.add_argument("--features-version", default="latest", help="its version")
    p.add_argument("--out", type=Path, help="report folder (default: runs/eval/NAME-VERSION)")
    p.add_argument("--valid", type=Path, help="validation data-set file (Parzen sigma)")
    p.add_argument("--test", type=Path, help="test data-set file (Parzen LL; held-out reals)")
    p.add_argument("--inception", type=Path, help="local pt_inception-2015-12-05 weights file")
    p.add_argument(
        "--inception-sha256", default=FID_INCEPTION_SHA256, help="expected sha256 of that file"
    )
    p.add_argument("--seed", type=int, default=0, help="split of R and the C2ST classifier")
    p.add_argument("--max-real", type=int, default=0, help="use at most this many reals (0=all)")
    p.add_argument("--c2st-epochs", type=int, default=8, help="C2ST classifier epochs")
    p.add_argument("--kid-subsets", type=int, default=100, help="KID subsets")
    p.add_argument("--parzen-samples", type=int, default=PARZEN_SAMPLES, help="Parzen centres")
    p.add_argument("--threads", type=int, default=0, help="CPU threads (0 = torch's default)")
    p.add_argument(
        "--store-metrics",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="write the headline numbers into the model's manifest",
    )
    p.set_defaults(func=cmd_evaluate)
    add_features_command(sub)
    add_mnist_command(sub)


def cmd_evaluate(args: argparse.Namespace) -> int:
    if args.threads:
        torch.set_num_threads(args.threads)
    store = ModelStore(args.store)
    features = store.load_feature_extractor(args.features, args.features_version)
    version = store.resolve(args.model, args.version).name
    out = args.out or Path("runs/eval") / f"{args.model}-{version}"
    opt = EvalOptions(
        seed=args.seed,
        max_real=args.max_real,
        c2st_epochs=args.c2st_epochs,
        kid_subsets=args.kid_subsets,
        parzen_samples=args.parzen_samples,
        inception=args.inception,
        inception_sha256=args.inception_sha256,
    )
    ev = evaluate_model(
        store, args.model, version, args.data, features, out, opt, args.valid, args.test
    )
    manifest = store.manifest(args.model, version)
    report = write_report(out, manifest, ev, args.data)
    if args.store_metrics:
        store.update_metrics(args.model, version, {"evaluation": ev.headline})
    print(markdown_table(ev.rows))
    print(f"wrote {report}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Standalone entry (``python -m training.evaluate ...``), same commands as the CLI."""
    parser = argparse.ArgumentParser(prog="python -m training")
    add_evaluate_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
