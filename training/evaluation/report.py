"""The evaluation report: ``report.md`` with its pictures, and ``metrics.json``."""

from __future__ import annotations

import json
import platform
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from PIL import Image, ImageDraw, ImageFont

from model_store import Generator, to_uint8
from training.evaluation.table import Row, markdown_table
from training.samples import generate, make_grid


@dataclass
class Evaluation:
    """What an evaluation found: the table, the headline numbers, the files it wrote."""

    headline: dict[str, Any] = field(default_factory=dict)  # goes into the manifest
    rows: list[Row] = field(default_factory=list)
    files: dict[str, str] = field(default_factory=dict)


def category_grid(g: Generator, alpha: str, class_names: list[str], columns: int) -> Image.Image:
    """One row per category (captioned), ``columns`` seeds each; a square for unconditional."""
    rows = len(class_names) if g.num_classes else columns
    labels = torch.arange(rows).repeat_interleave(columns) if g.num_classes else None
    seeds = list(range(rows * columns))
    tiles = to_uint8(generate(g, seeds, labels, 256), alpha).numpy()
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
