"""PNG encoders on real model output, one core: time, bytes, and whether the PNG decodes to
the same pixels. The suite (benchmarks/suite.py) measures whichever are installed; this
runs the same measurement at 64 px and at 256 px (``?size=256``) and writes a table:

    pip install --target /tmp/pngenc imagecodecs fpng lazy_loader   # not project deps
    PYTHONPATH=/tmp/pngenc python benchmarks/png_encoders.py --out benchmarks/png_encoders.md
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shlex
import sys
from pathlib import Path

from baselines import default_generator, seed_rows
from report import replace
from suite import machine, png_encoders

from app.settings import Settings
from model_store.paint import paint


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="per encoder and size")
    parser.add_argument("--out", type=Path, help="Markdown file to write")
    args = parser.parse_args()
    generator, m, dtype = default_generator(Settings(device="cpu", threads=1))
    z, labels = seed_rows(m, range(64))
    lines = [
        "# PNG encoders on real model output",
        "",
        f"{dt.datetime.now():%Y-%m-%d %H:%M}, {machine()['cpu']}, one core; "
        f"{m.ref}, seeds 0..63; load average before: {os.getloadavg()[0]:.2f}.  ",
        f"Command: `{shlex.join([sys.executable.rsplit('/', 1)[-1], *sys.argv])}`",
        "",
        "| size | encoder | ms / image | images/s per core | mean bytes | same pixels back |",
        "|---:|---|---:|---:|---:|---|",
    ]
    for size in (m.resolution, 256):
        pixels = paint(generator, m, z, labels, [1.0] * 64, [size] * 64, dtype)
        for row in png_encoders(pixels, args.seconds):
            if "error" in row:
                lines.append(f"| {size} | {row['encoder']} | {row['error']} | | | |")
                continue
            lines.append(
                f"| {size} | {row['encoder']} | {row['ms']:.3f} | {row['per_core_s']:.0f} | "
                f"{row['bytes']:.0f} | {'yes' if row['exact'] else 'no'} |"
            )
    replace(lines, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
