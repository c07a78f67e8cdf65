"""Animation formats of POST /interpolate on real model output, one core: encode time and
bytes for GIF, lossy WebP (what the service sends), lossless WebP and the PNG strip.

    python benchmarks/animation_formats.py --out benchmarks/animation_formats.md
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import os
import shlex
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from baselines import default_generator
from report import replace
from suite import machine

from app.settings import Settings
from model_store import seed_to_latent
from model_store.images import encode_animation, to_image
from model_store.latents import interpolate
from model_store.paint import paint


def lossless_webp(frames: list[np.ndarray], fps: float) -> bytes:
    out = io.BytesIO()
    images = [to_image(f) for f in frames]
    images[0].save(
        out, format="WEBP", save_all=True, append_images=images[1:],
        duration=round(1000 / fps), loop=0, lossless=True,
    )  # fmt: skip
    return out.getvalue()


def timed(encode: Callable[[], bytes], seconds: float) -> tuple[float, int]:
    """(ms per call, bytes), the best of repeated calls for ``seconds``."""
    best, size, until = float("inf"), 0, time.perf_counter() + seconds
    while time.perf_counter() < until or best == float("inf"):
        started = time.perf_counter()
        size = len(encode())
        best = min(best, time.perf_counter() - started)
    return best * 1000, size


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=30)
    parser.add_argument("--fps", type=float, default=12)
    parser.add_argument("--seconds", type=float, default=2.0, help="per format and size")
    parser.add_argument("--out", type=Path, help="Markdown file to write")
    args = parser.parse_args()
    generator, m, dtype = default_generator(Settings(device="cpu", threads=1))
    z = interpolate(seed_to_latent(1, m.z_dim), seed_to_latent(2, m.z_dim), args.frames)
    label = m.label_for(None, 1)  # seed 1's class, as the service gives it
    lines = [
        "# Animation formats of /interpolate",
        "",
        f"{dt.datetime.now():%Y-%m-%d %H:%M}, {machine()['cpu']}, one core; {m.ref}, "
        f"seed 1 → 2 (slerp), {args.frames} frames at {args.fps:g} fps; best of repeated "
        f"encodes over {args.seconds:g} s; load average before: {os.getloadavg()[0]:.2f}.  ",
        f"Command: `{shlex.join([sys.executable.rsplit('/', 1)[-1], *sys.argv])}`",
        "",
        "| size | format | ms per animation | bytes |",
        "|---:|---|---:|---:|",
    ]
    for size in (m.resolution, 256):
        n = len(z)
        frames = paint(generator, m, z, [label] * n, [1.0] * n, [size] * n, dtype)
        formats: dict[str, Callable[[], bytes]] = {
            "gif": lambda f=frames: encode_animation(f, "gif", args.fps),
            "webp, lossy (served)": lambda f=frames: encode_animation(f, "webp", args.fps),
            "webp, lossless": lambda f=frames: lossless_webp(f, args.fps),
            "png strip": lambda f=frames: encode_animation(f, "png", args.fps),
        }
        for name, encode in formats.items():
            ms, size_bytes = timed(encode, args.seconds)
            lines.append(f"| {size} | {name} | {ms:.1f} | {size_bytes:,} |")
    replace(lines, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
