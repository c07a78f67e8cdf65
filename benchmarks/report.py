"""What the benchmark scripts do with a result block: print it and add it to the committed
results file that ``--out`` names: appended (``publish``: newest last), under the file's
heading (``prepend``: newest first, ``record`` with the run's figures as JSON beside it),
or as the whole file (``replace``)."""

from __future__ import annotations

import json
from pathlib import Path


def publish(lines: list[str], out: Path | None) -> None:
    text = "\n".join(lines)
    print(text)
    if out:
        with out.open("a") as f:
            f.write(text + "\n")


def replace(lines: list[str], out: Path | None) -> None:
    """For results files that hold one run (the newest): print it and write it whole."""
    text = "\n".join(lines) + "\n"
    print(text)
    if out:
        out.write_text(text)


def prepend(out: Path, section: str, heading: str) -> None:
    """Newest run first, under the file's heading; earlier runs stay as history."""
    old = out.read_text().removeprefix(heading) if out.exists() else ""
    out.write_text(heading + section + "\n" + old)


def record(prefix: Path, run: dict, section: str, heading: str) -> None:
    """PREFIX.md (``prepend``) and PREFIX.json: every run's figures, oldest first."""
    prepend(prefix.with_suffix(".md"), section, heading)
    js = prefix.with_suffix(".json")
    runs = json.loads(js.read_text()) if js.exists() else []
    js.write_text(json.dumps([*runs, run], indent=1) + "\n")
