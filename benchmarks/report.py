"""What every benchmark script does with its result block: print it, and append it to the
committed Markdown results file when ``--out`` names one (newest block last)."""

from __future__ import annotations

from pathlib import Path


def publish(lines: list[str], out: Path | None) -> None:
    text = "\n".join(lines)
    print(text)
    if out:
        with out.open("a") as f:
            f.write(text + "\n")
