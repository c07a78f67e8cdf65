"""The seed paper's Table 1 on the 5k MNIST digits: Parzen log-likelihood of a trained run.

    python benchmarks/mnist_parzen.py --run runs/mnist-goodfellow --out benchmarks/mnist_parzen

For every checkpoint of the run (EMA and raw generator) it draws 10,000 samples, picks
sigma from logspace(-1, 0, 10) on the validation split, and keeps the checkpoint with the
best *validation* log-likelihood; only that one is scored on the test split. References on
the same splits: the training digits themselves as Parzen centres, k-means centroids of
them (Theis et al. 2016: Parzen rewards memorisation, so both score well without being a
model of anything), and the nearest-neighbour check of the chosen generator's samples.
Writes results.json, samples.png and nearest.png into --out and prints the Markdown table.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch
from scipy.cluster.vq import kmeans2

from model_store import Generator, ModelStore, build_generator
from training import checkpoint as ckpt
from training.data import load_dataset
from training.metrics import (
    Neighbours,
    ParzenResult,
    nearest_neighbours,
    parzen_evaluation,
    save_nearest_pairs_png,
)
from training.samples import make_grid

PAPER = [  # Goodfellow et al. 2014, Table 1 (MNIST, 10k test images, 10k samples)
    ("GAN (Goodfellow et al. 2014)", "225 ± 2"),
    ("Deep GSN", "214 ± 1.1"),
    ("DBN", "138 ± 2"),
    ("Stacked CAE", "121 ± 1.6"),
]


def pixels(path: Path) -> torch.Tensor:
    """A data-set file -> [N, 784] float64 in [0, 1]."""
    return load_dataset(path).images.flatten(1).double() / 255


def generator_of(run: Path, step_dirs: list[Path], which: str) -> Generator:
    """The ``which`` generator (``G_ema`` or ``G``) of one checkpoint, or the mean of its
    weights over several (checkpoint averaging: a longer EMA after the fact)."""
    info = json.loads((run / "run.json").read_text())
    total: dict[str, torch.Tensor] = {}
    for step_dir in step_dirs:
        tensors, _ = ckpt.load_checkpoint(step_dir)
        g = build_generator(info["architecture"], info["generator_config"])
        ckpt.load_module(which, g, tensors)
        for k, v in g.state_dict().items():
            total[k] = total.get(k, 0) + v.double() / len(step_dirs)
    g.load_state_dict({k: v.float() for k, v in total.items()})
    return g.eval()


@torch.no_grad()
def samples_of(g: Generator, n: int, seed: int) -> torch.Tensor:
    """n samples [n, 784] in [0, 1] from fixed latents."""
    z = torch.randn(n, g.z_dim, generator=torch.Generator().manual_seed(seed))
    return ((g(z) + 1) / 2).flatten(1).double()


def row(name: str, result: ParzenResult) -> dict:
    return {
        "name": name,
        "mean": round(result.mean, 2),
        "se": round(result.standard_error, 2),
        "sigma": round(result.sigma, 4),
        "centres": result.num_samples,
        "test": result.num_test,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", type=Path, required=True, help="training run directory")
    parser.add_argument("--data-dir", type=Path, default=Path("data/mnist"))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/mnist_parzen"))
    parser.add_argument("--store", type=Path, default=Path("runs/store"), help="keeps the pick")
    parser.add_argument("--samples", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    train, valid, test = (
        pixels(args.data_dir / f"mnist-{s}.dne.gz") for s in ("train", "valid", "test")
    )

    # 1. Choose by validation log-likelihood only: the best single checkpoint (EMA or raw
    # generator), and the best mean of the last k EMA checkpoints.
    dirs = sorted((args.run / "checkpoints").glob("step-*"))
    singles = [(f"{d.name} {w}", [d], w) for d in dirs for w in ("G_ema", "G")]
    windows = [k for k in (2, 4, 8, 16, 32) if k < len(dirs)] + [len(dirs)]
    averages = [
        (f"mean of G_ema, {dirs[-k].name}..{dirs[-1].name}", dirs[-k:], "G_ema") for k in windows
    ]
    curve, best = [], {}
    for kind, candidates in (("single", singles), ("averaged", averages)):
        for label, chosen, which in candidates:
            g = generator_of(args.run, chosen, which)
            s = samples_of(g, args.samples, args.seed)
            r = parzen_evaluation(s, valid, valid[:1])  # sigma and validation LL only
            v = r.validation[r.sigma]
            curve.append({"candidate": label, "valid_ll": round(v, 2), "sigma": r.sigma})
            print(curve[-1], flush=True)
            if kind not in best or v > best[kind][0]:
                best[kind] = (v, label, g, s)

    # 2. Score the two chosen generators on the test split (its only use).
    results = {}
    for kind, (_, label, _, s) in best.items():
        results[kind] = row(f"{label}", parzen_evaluation(s, valid, test))
    kind = max(best, key=lambda k: best[k][0])  # pictures and neighbours: best on validation
    _, _, g, s = best[kind]
    args.out.mkdir(parents=True, exist_ok=True)
    store = ModelStore(args.store)  # the chosen generator, for `python -m training evaluate`
    saved = store.save(g, name="mnist-gan", description=f"{args.run.name}: {best[kind][1]}")
    results["stored"] = f"{args.store}/{saved.ref}"

    # 3. References that are not generative models, on the same splits.
    results["train_digits"] = row(
        "training digits as centres", parzen_evaluation(train, valid, test)
    )
    for k in (100, 300, 1000):
        centroids, _ = kmeans2(train.numpy(), k, seed=args.seed, minit="++")
        r = parzen_evaluation(torch.from_numpy(centroids), valid, test)
        results[f"kmeans_{k}"] = row(f"k-means, {k} centroids of the training digits", r)

    # 4. Nearest neighbours: are the samples copies of training digits?
    gen_u8 = (s[:2000].view(-1, 28, 28) * 255).round().to(torch.uint8).numpy()
    train_u8 = (train.view(-1, 28, 28) * 255).round().to(torch.uint8).numpy()
    test_u8 = (test.view(-1, 28, 28) * 255).round().to(torch.uint8).numpy()
    nn_gen = nearest_neighbours(gen_u8, train_u8)
    nn_test = nearest_neighbours(test_u8, train_u8)
    results["nearest"] = {
        "generated_median": round(float(np.median(nn_gen.distance)) / 255, 3),
        "test_median": round(float(np.median(nn_test.distance)) / 255, 3),
        "generated_min": round(float(nn_gen.distance.min()) / 255, 3),
        "test_min": round(float(nn_test.distance.min()) / 255, 3),
        "generated_below_test_1pct": round(
            float(np.mean(nn_gen.distance < np.quantile(nn_test.distance, 0.01))), 4
        ),
        "n_generated": len(gen_u8),
    }
    in_unit = Neighbours(nn_gen.index, nn_gen.distance / 255)  # captions in [0, 1] units
    save_nearest_pairs_png(gen_u8, train_u8, in_unit, args.out / "nearest.png", k=24, columns=4)
    grid = make_grid(gen_u8[:100, :, :, None], 10)
    grid.resize((grid.width * 2, grid.height * 2)).save(args.out / "samples.png")
    results["validation_curve"] = curve
    results["machine"] = f"{platform.machine()}, {torch.get_num_threads()} torch thread(s)"
    results["wall_time_s"] = round(time.perf_counter() - started, 1)
    (args.out / "results.json").write_text(json.dumps(results, indent=1) + "\n")

    print("| Model | Parzen log-likelihood (nats) | sigma | centres | test images |")
    print("|---|---|---|---|---|")
    for r in results.values():
        if isinstance(r, dict) and "mean" in r:
            line = f"| {r['name']} | {r['mean']:.1f} ± {r['se']:.1f} | {r['sigma']:.3f} |"
            print(f"{line} {r['centres']} | {r['test']} |")
    for name, value in PAPER:
        print(f"| {name}, paper | {value} | | 10000 | 10000 |")
    print(json.dumps(results["nearest"]))


if __name__ == "__main__":
    main()
