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

import shlex
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch

from model_store import ModelStore, sha256_file
from model_store.store import LoadedFeatures
from training.data import ImageDataset, load_dataset
from training.evaluation.registry import METRICS, EvalContext, EvalOptions
from training.evaluation.report import Evaluation, category_grid
from training.evaluation.table import table_png
from training.samples import generate


class EvaluationError(ValueError):
    """The model and the data cannot be evaluated together; the message says why."""


def reference_set(data: Path, recipe: dict[str, Any], max_real: int, seed: int) -> ImageDataset:
    """The model's training data as it was trained on (skin-tone filter), shuffled."""
    ds = load_dataset(data).with_skin_tones(recipe.get("skin_tones", "drop"))
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
    """Every metric of ``METRICS`` for one stored generator; pictures go to ``out``."""
    started = time.perf_counter()
    model = store.load(name, version)
    m, g = model.manifest, model.generator
    out.mkdir(parents=True, exist_ok=True)
    ds = reference_set(data, m.training.recipe, opt.max_real, opt.seed)
    if (ds.channels, ds.resolution) != (m.channels, m.resolution):
        raise EvaluationError(
            f"{data} holds {ds.channels}x{ds.resolution}px images, the model makes "
            f"{m.channels}x{m.resolution}px ones"
        )
    half = len(ds) // 2
    if half < 2 * opt.pr_k + 2:
        raise EvaluationError(f"{data}: {len(ds)} images are too few to evaluate with")
    idx1, idx2 = np.arange(half), np.arange(half, 2 * half)
    labels2 = ds.labels[idx2] if g.num_classes else None
    seeds = list(range(opt.seed_offset, opt.seed_offset + half))
    ctx = EvalContext(
        generator=g,
        manifest=m,
        features=features,
        reference=ds,
        idx1=idx1,
        idx2=idx2,
        real=ds.to_float(premultiply=ds.channels == 4),
        fake=generate(g, seeds, labels2, opt.batch_size),
        labels2=labels2,
        opt=opt,
        out=out,
        valid=load_dataset(valid) if valid is not None else None,
        test=load_dataset(test) if test is not None else None,
    )
    ev = Evaluation()
    for metric in METRICS.values():
        section = metric(ctx)
        if section is not None:
            ev.rows += section.rows
            ev.headline |= section.headline
            ev.files |= section.files

    category_grid(g, m.alpha, list(m.class_names), opt.columns).save(out / "samples.png")
    ev.files["samples"] = "samples.png"
    table_png(ev.rows, f"{m.ref}: {half} generated vs {half} real").save(out / "metrics.png")
    ev.files["metrics"] = "metrics.png"
    ev.headline |= {
        "feature_space": ctx.space,
        "num_generated": half,
        "num_real": half,
        "data": ds.describe(),
        "data_sha256": sha256_file(data),
        "seed": opt.seed,
        "evaluated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "wall_time_s": round(time.perf_counter() - started, 1),
        "command": "python -m training " + shlex.join(sys.argv[1:]),
    }
    return ev
