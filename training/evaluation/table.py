"""The metric table: one ``Row`` per number, beside its real-vs-real floor, as Markdown
(for the report) and as a picture (for pages and issues that show images)."""

from __future__ import annotations

from dataclasses import dataclass

from PIL import Image, ImageDraw, ImageFont


@dataclass
class Row:
    """One line of the metric table."""

    metric: str
    value: str
    floor: str  # the same metric for two real samples (or what to compare with)
    note: str = ""


def markdown_table(rows: list[Row]) -> str:
    lines = ["| Metric | Model | Real vs real | Note |", "|---|---|---|---|"]
    lines += [f"| {r.metric} | {r.value} | {r.floor} | {r.note} |" for r in rows]
    return "\n".join(lines)


def table_png(rows: list[Row], title: str) -> Image.Image:
    """The metric table as a picture."""
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
