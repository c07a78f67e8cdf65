"""Does the truncation range keep images visible? Both modes, every category, one model.

    python benchmarks/truncation.py emoji --seeds 200 --out benchmarks/truncation

For each psi and category it paints seeds 0..N-1 and reports the share of images that are
(almost) invisible, i.e. under 2% of their pixels at least half opaque, and the mean share
of opaque pixels. Writes ``OUT.md`` (the table, machine, date, command) and ``OUT.png``
(seeds 0-3 of every category at psi 0 / 0.5 / 1, per mode, on a checkerboard).
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from model_store import DEFAULT_ROOT, ModelStore, seeds_to_latents
from model_store.images import grid
from model_store.networks.base import STEM_MEAN_SAMPLES, STEM_MEAN_SEED, class_stem_sums
from model_store.paint import paint

PSIS = (0.0, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0)
MODES = ("z_scale", "feature_avg")
INVISIBLE = 0.02  # share of pixels with alpha >= 128 under which an image counts as blank


def coverage(pixels: list[np.ndarray]) -> np.ndarray:
    return np.array([(p[..., 3] >= 128).mean() for p in pixels])


def on_checkerboard(pixels: np.ndarray, cell: int = 8) -> np.ndarray:
    h, w = pixels.shape[:2]
    board = ((np.indices((h, w)) // cell).sum(0) % 2 * 40 + 200).astype(np.float32)
    alpha = pixels[..., 3:] / 255
    return (pixels[..., :3] * alpha + board[..., None] * (1 - alpha)).astype(np.uint8)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", nargs="?", default="emoji")
    parser.add_argument("--version", default="latest")
    parser.add_argument("--store", type=Path, default=DEFAULT_ROOT)
    parser.add_argument("--seeds", type=int, default=200)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/truncation"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    loaded = ModelStore(args.store).load(args.model, args.version)
    g, m = loaded.generator, loaded.manifest
    if m.channels != 4:
        print(f"{m.ref} has no alpha channel: nothing to measure", file=sys.stderr)
        return 1
    z = seeds_to_latents(list(range(args.seeds)), m.z_dim)
    classes = list(range(len(m.class_names))) or [None]
    names = m.class_slugs or m.class_names or ["(unconditional)"]
    lines = [f"# Truncation on {m.ref}: is anything left to see?", ""]
    lines += [
        f"`{' '.join(['python', *sys.argv])}` on {platform.processor() or platform.machine()}, "
        f"{datetime.date.today()}, torch {torch.__version__}, {args.threads} threads, "
        f"load average {os.getloadavg()[0]:.1f} at the start (other work may have run).",
        "",
        f"Each cell: share of seeds 0..{args.seeds - 1} painting an (almost) invisible "
        f"image (under {INVISIBLE:.0%} of pixels at least half opaque) / mean share of "
        "opaque pixels.",
        "",
    ]
    previews = {}
    for mode in MODES:
        g.truncation_mode = mode
        lines += [f"## {mode}", "", "| ψ | " + " | ".join(names) + " |"]
        lines.append("|---" * (len(names) + 1) + "|")
        for psi in PSIS:
            cells = []
            for label in classes:
                n = len(z)
                pixels = paint(g, m, z, [label] * n, [psi] * n, [m.resolution] * n)
                cover = coverage(pixels)
                cells.append(f"{(cover < INVISIBLE).mean():.0%} / {cover.mean():.2f}")
                if psi in (0.0, 0.5, 1.0):
                    previews[(mode, psi, label)] = pixels[:4]
            lines.append(f"| {psi:g} | " + " | ".join(cells) + " |")
            print(lines[-1], flush=True)
        lines.append("")
    tiles = [
        on_checkerboard(p)
        for label in classes
        for mode in MODES
        for psi in (0.0, 0.5, 1.0)
        for p in previews[(mode, psi, label)]
    ]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(grid(tiles, columns=24)).save(args.out.with_suffix(".png"))
    lines += [
        f"`{args.out.with_suffix('.png').name}`: one row per category; seeds 0-3 at ψ = 0, "
        "0.5, 1 under z_scale, then the same under feature_avg.",
        "",
    ]
    g.truncation_mode = "feature_avg"
    lines += stem_mean_checks(g, m, z[:90])
    args.out.with_suffix(".md").write_text("\n".join(lines))
    return 0


def stem_mean_checks(g, m, z: torch.Tensor) -> list[str]:
    """How long fitting the stem means takes (what start-up pays), and how far the served
    estimate (STEM_MEAN_SAMPLES draws) paints from one over 8x as many draws."""
    labels = [m.label_for(None, i) for i in range(len(z))]
    n = len(z)

    def painted(psi: float) -> np.ndarray:
        return np.stack(paint(g, m, z, labels, [psi] * n, [m.resolution] * n)).astype(int)

    started = time.perf_counter()
    g.fit_stem_means(samples=8 * STEM_MEAN_SAMPLES)
    reference = {psi: painted(psi) for psi in (0.0, 0.5)}
    timings = {}
    for name, fit in (("shared stem (served)", g.fit_stem_means), ("class by class", None)):
        started = time.perf_counter()
        if fit is None:
            total = sum(class_stem_sums(g, chunk) for chunk in fixed_draw(g.z_dim).split(512))
            g.stem_means = total / STEM_MEAN_SAMPLES
        else:
            fit()
        timings[name] = time.perf_counter() - started
    lines = [
        "## Stem means (feature_avg)",
        "",
        f"Fitting them from {STEM_MEAN_SAMPLES} antithetic draws, torch threads "
        f"{torch.get_num_threads()}: "
        + ", ".join(f"{name} {seconds:.2f} s" for name, seconds in timings.items())
        + ".",
        "",
        f"Painted with that estimate vs one from {8 * STEM_MEAN_SAMPLES} draws, "
        f"{n} seeds across the categories (grey levels, 0-255):",
        "",
        "| ψ | mean abs difference | 99th percentile | max | max where alpha ≥ 64 |",
        "|---|---|---|---|---|",
    ]
    for psi, ref in reference.items():
        diff = np.abs(painted(psi) - ref)
        seen = diff * (ref[..., 3:] >= 64)  # un-premultiplying amplifies near-clear pixels
        lines.append(
            f"| {psi:g} | {diff.mean():.2f} | {np.percentile(diff, 99):.0f} | {diff.max()} "
            f"| {seen.max()} |"
        )
    return [*lines, ""]


def fixed_draw(z_dim: int) -> torch.Tensor:
    """The draw fit_stem_means uses (the same seed and antithetic pairs)."""
    rng = np.random.Generator(np.random.PCG64(STEM_MEAN_SEED))
    half = rng.standard_normal((STEM_MEAN_SAMPLES // 2, z_dim)).astype(np.float32)
    return torch.from_numpy(np.concatenate([half, -half]))


if __name__ == "__main__":
    sys.exit(main())
