"""Loss curves as PNG, drawn with Pillow (no plotting library needed)."""

from __future__ import annotations

import io
import json
from pathlib import Path

from PIL import Image, ImageDraw

SERIES = {"loss_d_real": (31, 119, 180), "loss_d_fake": (44, 160, 44), "loss_g": (214, 39, 40)}


def loss_curve_png(log: Path, width: int = 640, height: int = 320) -> bytes:
    """Losses from ``log.jsonl`` against images seen, one coloured line per loss."""
    records = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    left, right, top, bottom = 50, width - 10, 10, height - 30
    draw.rectangle((left, top, right, bottom), outline=(120, 120, 120))
    xs = [r["images_seen"] for r in records]
    values = [r[k] for r in records for k in SERIES if k in r]
    if len(records) >= 2 and values:
        lo, hi = min(values), max(values)
        hi = hi if hi > lo else lo + 1
        x_max = max(xs[-1], 1)

        def point(x: float, y: float) -> tuple[float, float]:
            return (
                left + (right - left) * x / x_max,
                bottom - (bottom - top) * (y - lo) / (hi - lo),
            )

        for key, colour in SERIES.items():
            pts = [point(r["images_seen"], r[key]) for r in records if key in r]
            if len(pts) >= 2:
                draw.line(pts, fill=colour, width=1)
        draw.text((4, top), f"{hi:.2f}", fill="black")
        draw.text((4, bottom - 10), f"{lo:.2f}", fill="black")
        draw.text((right - 120, bottom + 8), f"{x_max:,} images", fill="black")
    for i, (key, colour) in enumerate(SERIES.items()):
        draw.text((left + 10 + i * 110, bottom + 8), key, fill=colour)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()
