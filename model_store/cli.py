"""``python -m model_store``: paint from the stored models without a server.

    python -m model_store list
    python -m model_store paint 0-7 --out out/                    # one PNG per seed
    python -m model_store paint 0-63 --grid --out grid.png         # one grid
    python -m model_store paint 3 42 7 --interpolate --out morph.gif   # through the seeds
    python -m model_store paint 1 2 3 --weights 1,-1,1 --out sum.png   # latent arithmetic
    python -m model_store paint 0-15 --category flags --truncation 0.7 --out flags/

The images are the service's for the same seed and options (the same latent draw,
class rule, truncation, painting step and PNG text chunks): ``/seed/42`` and
``paint 42`` agree. Like stylegan2-ada's ``generate.py``, for use offline and in scripts.
"""

from __future__ import annotations

import argparse
import sys
from itertools import pairwise
from pathlib import Path

import torch
from tqdm import tqdm

from model_store.atomic import write_atomic
from model_store.images import (
    ANIMATION_FORMATS,
    encode_animation,
    encode_png,
    grid,
    provenance,
)
from model_store.latents import MAX_SEED, interpolate, seeds_to_latents, weighted_sum
from model_store.manifest import Manifest
from model_store.paint import paint
from model_store.store import DEFAULT_ROOT, LoadedModel, ModelStore, StoreError

BATCH = 64  # images per forward pass


class UsageError(Exception):
    """A bad option value: reported in one line, status 2."""


def parse_seeds(text: str) -> list[int]:
    """``0-3,7 9`` → [0, 1, 2, 3, 7, 9]."""
    seeds = []
    for part in text.replace(",", " ").split():
        low, _, high = part.partition("-")
        if not low.isdigit() or (high and not high.isdigit()):
            raise UsageError(f"seeds: {part!r} is not a seed or a range like 0-7")
        first, last = int(low), int(high or low)
        if last < first or last > MAX_SEED:
            raise UsageError(f"seeds: {part!r} must run upwards within 0 .. {MAX_SEED}")
        if last - first >= 100_000:
            raise UsageError(f"seeds: {part!r} is over 100,000 seeds")
        seeds.extend(range(first, last + 1))
    if not seeds:
        raise UsageError("give at least one seed")
    return seeds


def parse_weights(text: str, count: int) -> list[float]:
    try:
        weights = [float(w) for w in text.split(",")]
    except ValueError:
        raise UsageError(f"--weights: {text!r} is not numbers separated by commas") from None
    if len(weights) != count:
        raise UsageError(f"--weights: {len(weights)} weights for {count} seeds")
    return weights


def label_of(m: Manifest, category: str | None, seed: int) -> int | None:
    try:
        return m.label_for(category, seed)
    except ValueError as exc:
        raise UsageError(f"--category: {exc}") from None


def painted(
    model: LoadedModel, z: torch.Tensor, labels: list[int | None], psi: float, size: int
) -> list:
    """uint8 images for latents ``z`` [N, z_dim], in batches, with progress when long."""
    out: list = []
    chunks = list(range(0, len(z), BATCH))
    for start in tqdm(chunks, unit="batch", disable=len(chunks) < 3, file=sys.stderr):
        rows = z[start : start + BATCH]
        n = len(rows)
        out += paint(
            model.generator, model.manifest, rows, labels[start : start + n], [psi] * n, [size] * n
        )
    return out


def command_paint(args: argparse.Namespace) -> int:
    if not 0 <= args.truncation <= 2:
        raise UsageError("--truncation: must be in 0 .. 2")
    if not 2 <= args.steps <= 1000 or not 0 < args.fps <= 100:
        raise UsageError("--steps must be 2 .. 1000 and --fps 0 .. 100")
    seeds = parse_seeds(" ".join(args.seeds))
    if args.threads:
        torch.set_num_threads(args.threads)
    model = ModelStore(args.store).load(args.model, args.version, args.device)
    m = model.manifest
    size = args.size or m.resolution
    if not 8 <= size <= 2048:
        raise UsageError("--size: must be 8 .. 2048 pixels")
    z = seeds_to_latents(seeds, m.z_dim)
    if args.weights is not None:
        return paint_sum(args, model, seeds, z, size)
    if args.interpolate:
        return paint_path(args, model, seeds, z, size)
    labels = [label_of(m, args.category, s) for s in seeds]
    images = painted(model, z, labels, args.truncation, size)
    if args.grid:
        out = args.out or Path(f"{m.name}-{m.version}-grid.png")
        text = provenance(m, f"{seeds[0]} .. {seeds[-1]}", args.category, args.truncation)
        write_atomic(out, encode_png(grid(images, args.columns), 6, text))
        print(f"{out}: {len(images)} seeds of {m.ref}")
        return 0
    folder = args.out or Path("out")
    for seed, label, image in zip(seeds, labels, images, strict=True):
        text = provenance(m, str(seed), m.class_slug(label), args.truncation)
        write_atomic(folder / f"{m.name}-{m.version}-{seed}.png", encode_png(image, 6, text))
    print(f"{folder}/: {len(images)} PNGs of {m.ref}")
    return 0


def paint_path(args: argparse.Namespace, model: LoadedModel, seeds, z, size: int) -> int:
    """An animation through the seeds in order, ``--steps`` frames from one to the next."""
    m = model.manifest
    if len(seeds) < 2:
        raise UsageError("--interpolate: give at least two seeds")
    out = args.out or Path(f"{m.name}-{m.version}-{seeds[0]}-{seeds[-1]}.gif")
    fmt = out.suffix.lstrip(".").lower()
    if fmt not in ANIMATION_FORMATS:
        raise UsageError(f"--out: name a .gif, .webp or .png file, not {out.name!r}")
    path = [interpolate(a, b, args.steps, args.mode)[:-1] for a, b in pairwise(z)]
    frames_z = torch.cat([*path, z[-1:]])
    label = label_of(m, args.category, seeds[0])  # one category: the first seed's
    frames = painted(model, frames_z, [label] * len(frames_z), args.truncation, size)
    write_atomic(out, encode_animation(frames, fmt, args.fps, args.bounce))
    print(f"{out}: {len(frames)} frames through seeds {', '.join(map(str, seeds))} of {m.ref}")
    return 0


def paint_sum(args: argparse.Namespace, model: LoadedModel, seeds, z, size: int) -> int:
    m = model.manifest
    weights = parse_weights(args.weights, len(seeds))
    if not any(weights):
        raise UsageError("--weights: all zero")
    total = weighted_sum(z, weights, rescale=not args.no_rescale)
    label = label_of(m, args.category, seeds[0])  # the first seed's, as /arithmetic
    (image,) = painted(model, total[None], [label], args.truncation, size)
    out = args.out or Path(f"{m.name}-{m.version}-sum.png")
    terms = " ".join(f"{w:+g}·{s}" for w, s in zip(weights, seeds, strict=True))
    write_atomic(
        out, encode_png(image, 6, provenance(m, terms, m.class_slug(label), args.truncation))
    )
    print(f"{out}: {terms} of {m.ref}")
    return 0


def command_list(args: argparse.Namespace) -> int:
    store = ModelStore(args.store)
    for m in store.manifests("generator"):
        classes = ", ".join(m.class_slugs) or "unconditional"
        print(f"{m.ref}\t{m.resolution}px\t{classes}\t{m.description}")
    return 0


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="python -m model_store",
        description="Paint from the stored models, offline: no server needed.",
    )
    top.add_argument("--store", type=Path, default=DEFAULT_ROOT, help="folder of models")
    commands = top.add_subparsers(dest="command", required=True)
    commands.add_parser("list", help="the stored generators").set_defaults(run=command_list)
    p = commands.add_parser(
        "paint",
        help="images of seeds: PNGs, a grid, an animation or a weighted sum",
        description=__doc__.split("\n\n")[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.set_defaults(run=command_paint)
    p.add_argument("seeds", nargs="+", help="seeds and ranges: 0-7 42 (0 .. 2^64 - 1)")
    p.add_argument("--model", default="emoji", help="model name (default: emoji)")
    p.add_argument("--version", default="latest", help="model version (default: latest)")
    p.add_argument("--category", help="a category slug (default: each seed's own)")
    p.add_argument(
        "--truncation", type=float, default=1.0, help="ψ in 0 .. 2: lower is more typical"
    )
    p.add_argument("--size", type=int, help="output edge in pixels (default: the model's)")
    p.add_argument("--out", type=Path, help="a folder for PNGs, else the file to write")
    p.add_argument("--grid", action="store_true", help="one PNG of all the seeds")
    p.add_argument("--columns", type=int, help="grid columns (default ⌈√n⌉)")
    p.add_argument(
        "--interpolate",
        action="store_true",
        help="an animation through the seeds; --out's suffix picks .gif, .webp or a .png strip",
    )
    p.add_argument("--steps", type=int, default=16, help="frames from one seed to the next")
    p.add_argument("--mode", choices=("slerp", "lerp"), default="slerp")
    p.add_argument("--fps", type=float, default=12.0, help="frames per second")
    p.add_argument("--bounce", action="store_true", help="play forward, then back")
    p.add_argument("--weights", help="paint Σ weight·latent, e.g. 1,-1,1 for a − b + c")
    p.add_argument(
        "--no-rescale", action="store_true", help="keep the sum as it is (default: ÷ √Σw²)"
    )
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return args.run(args)
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except StoreError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
