"""Evaluate several stored generators on one data set and print one comparison table.

    python benchmarks/quality.py emoji emoji-dcgan --data data/emoji.dne.gz \\
        --out benchmarks/quality

Runs ``python -m training evaluate MODEL --out OUT/MODEL-VERSION`` for each model (so each
report, its PNGs and the manifest's metrics are exactly what the command writes), then
prints the headline numbers side by side as Markdown, with the real-vs-real floor.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from model_store import DEFAULT_ROOT, ModelStore

ROWS = [  # (label, key, format, floor key)
    ("FD ({space})", "fd", "{:.2f}", "fd_real_floor"),
    ("KID x 1000 ({space})", "kid", "{:.2f}", "kid_real_floor"),
    ("Precision, k=3 ({space})", "precision", "{:.3f}", "precision_real_floor"),
    ("Recall, k=3 ({space})", "recall", "{:.3f}", "recall_real_floor"),
    ("Class agreement", "class_agreement", "{:.1%}", "class_agreement_real"),
    (
        "C2ST accuracy (fresh pixel CNN; 50% = indistinguishable)",
        "c2st_accuracy",
        "{:.1%}",
        "c2st_real_floor",
    ),
    (
        "Nearest training image, median L2 (pixels in [0, 1])",
        "nn_median",
        "{:.2f}",
        "nn_median_real",
    ),
    ("Closer to the training set than 99% of real images", "near_copy_fraction", "{:.1%}", None),
    ("Exact copies", "exact_copies", "{}", None),
    ("FID (Inception, pytorch-fid)", "fid_inception", "{:.2f}", None),
]


def value(metrics: dict, key: str, fmt: str) -> str:
    if key not in metrics:
        return "–"
    v = metrics[key] * (1000 if key.startswith("kid") else 1)
    return fmt.format(v)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("models", nargs="+", help="model names (NAME or NAME:VERSION)")
    parser.add_argument("--data", type=Path, default=Path("data/emoji.dne.gz"))
    parser.add_argument("--store", type=Path, default=DEFAULT_ROOT)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/quality"))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--skip-run", action="store_true", help="only tabulate metrics.json")
    parser.add_argument(
        "--also",
        action="append",
        default=[],
        metavar="LABEL=METRICS_JSON",
        help="add a column from an earlier evaluate run (e.g. one in another store)",
    )
    args, extra = parser.parse_known_args()  # anything else goes to evaluate
    store = ModelStore(args.store)
    results = {}
    for spec in args.models:
        name, _, version = spec.partition(":")
        version = store.resolve(name, version or "latest").name
        out = args.out / f"{name}-{version}"
        command = [sys.executable, "-m", "training", "evaluate", name, "--version", version]
        if args.store != DEFAULT_ROOT:
            command += ["--store", str(args.store)]
        command += ["--data", str(args.data), "--out", str(out)]
        command += ["--threads", str(args.threads), *extra]
        if not args.skip_run:
            print("$", " ".join(command[1:]), flush=True)
            subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
        results[f"{name} v{version}"] = json.loads((out / "metrics.json").read_text())
    for item in args.also:
        label, _, path = item.partition("=")
        results[label] = json.loads(Path(path).read_text())
    space = next(iter(results.values()))["feature_space"]
    names = list(results)
    print("| Metric | " + " | ".join(names) + " | Real vs real |")
    print("|---|" + "---|" * (len(names) + 1))
    for label, key, fmt, floor in ROWS:
        if not any(key in m for m in results.values()):
            continue
        cells = [value(m, key, fmt) for m in results.values()]
        ref = value(next(iter(results.values())), floor, fmt) if floor else ""
        print(f"| {label.format(space=space)} | " + " | ".join(cells) + f" | {ref} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
