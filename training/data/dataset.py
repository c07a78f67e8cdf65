"""Data sets in memory and on disk: one compact file of uint8 images + labels.

The file is a safetensors blob, gzip-compressed with a zero timestamp so building the
same data twice gives the same bytes. Its metadata (key ``dne``) carries the class
names, per-image names and the sources with their licences, so credit travels with
the data. Images are stored with straight (not premultiplied) alpha and RGB zeroed
where alpha is 0: invisible colour is noise that would only cost bytes.
"""

from __future__ import annotations

import gzip
import io
import json
import re
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load as load_tensors
from safetensors.torch import save as save_tensors

from model_store.atomic import write_atomic

SKIN_TONE_MODES = ("drop", "keep")


class DatasetError(ValueError):
    """A data set cannot be built or read; the message names the file and the problem."""


def slugify(name: str) -> str:
    """``"Smileys & Emotion"`` → ``"smileys-emotion"``: the form used in URLs."""
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


@dataclass(frozen=True)
class ImageDataset:
    """Images in memory. ``images``: [N, C, R, R] uint8, straight alpha when C == 4."""

    images: torch.Tensor
    labels: torch.Tensor  # [N] int64 class index (all 0 when there are no classes)
    class_names: tuple[str, ...] = ()  # empty: unconditional data
    class_slugs: tuple[str, ...] = ()
    names: tuple[str, ...] = ()  # one per image, e.g. "google/grinning face"
    skin_tone: torch.Tensor | None = None  # [N] uint8, 1 for skin-tone variants
    meta: dict[str, Any] = field(default_factory=dict)  # kind, sources, builder settings

    def __post_init__(self) -> None:
        n = len(self.images)
        if self.images.dtype != torch.uint8 or self.images.ndim != 4:
            raise DatasetError(
                f"images must be uint8 [N, C, H, W], got {self.images.dtype} "
                f"{tuple(self.images.shape)}"
            )
        if self.images.shape[1] not in (1, 3, 4) or self.images.shape[2] != self.images.shape[3]:
            raise DatasetError(
                f"images must be square with 1, 3 or 4 channels, got {tuple(self.images.shape)}"
            )
        if self.labels.shape != (n,):
            raise DatasetError(f"{n} images but labels of shape {tuple(self.labels.shape)}")
        if self.skin_tone is None:
            object.__setattr__(self, "skin_tone", torch.zeros(n, dtype=torch.uint8))
        if not self.class_slugs and self.class_names:
            object.__setattr__(self, "class_slugs", tuple(map(slugify, self.class_names)))
        if self.names and len(self.names) != n:
            raise DatasetError(f"{n} images but {len(self.names)} names")
        if n and self.class_names and int(self.labels.max()) >= len(self.class_names):
            raise DatasetError(
                f"label {int(self.labels.max())} but only {len(self.class_names)} classes"
            )

    def __len__(self) -> int:
        return len(self.images)

    @property
    def channels(self) -> int:
        return int(self.images.shape[1])

    @property
    def resolution(self) -> int:
        return int(self.images.shape[-1])

    def to_float(self, premultiply: bool = False) -> torch.Tensor:
        """[N, C, R, R] float32 in [-1, 1]; with ``premultiply`` RGB is multiplied by alpha
        so that resizing and blending in the generator's output space are correct."""
        x = self.images.float() / 255.0
        if premultiply and self.channels == 4:
            x = torch.cat([x[:, :3] * x[:, 3:], x[:, 3:]], dim=1)
        return x * 2.0 - 1.0

    def subset(self, mask: torch.Tensor) -> ImageDataset:
        index = mask.nonzero().flatten() if mask.dtype == torch.bool else mask
        return ImageDataset(
            images=self.images[index],
            labels=self.labels[index],
            class_names=self.class_names,
            class_slugs=self.class_slugs,
            names=tuple(self.names[i] for i in index.tolist()) if self.names else (),
            skin_tone=self.skin_tone[index],
            meta=self.meta,
        )

    def with_skin_tones(self, mode: str) -> ImageDataset:
        """``keep`` every image, or ``drop`` emoji skin-tone variants (base designs only).

        One rule for training, evaluation and the feature network: a model is measured
        against the data it was trained on."""
        if mode not in SKIN_TONE_MODES:
            raise ValueError(f"skin_tones must be drop or keep, got {mode!r}")
        if mode == "drop" and bool(self.skin_tone.any()):
            return self.subset(self.skin_tone == 0)
        return self

    def class_counts(self) -> list[int]:
        return torch.bincount(self.labels, minlength=len(self.class_names)).tolist()

    def describe(self) -> str:
        """One line for manifests and logs."""
        kind = self.meta.get("description") or self.meta.get("kind", "images")
        mode = {1: "grey", 3: "RGB", 4: "RGBA"}[self.channels]
        classes = f", {len(self.class_names)} classes" if self.class_names else ""
        return f"{kind}, {len(self)} images {self.resolution}x{self.resolution} {mode}{classes}"

    def credits(self) -> list[str]:
        """Credit lines the data's licences require (empty for a user's own folder)."""
        return list(self.meta.get("credits", []))


# --- the file format --------------------------------------------------------------------


def save_dataset(ds: ImageDataset, path: Path) -> None:
    """Write ``ds`` to ``path`` atomically (temp file + rename); same data → same bytes."""
    meta = {
        **ds.meta,
        "class_names": list(ds.class_names),
        "class_slugs": list(ds.class_slugs),
        "names": list(ds.names),
    }
    tensors = {
        "images": ds.images.contiguous(),
        "labels": ds.labels.to(torch.int64).contiguous(),
        "skin_tone": ds.skin_tone.to(torch.uint8).contiguous(),
    }
    raw = save_tensors(tensors, metadata={"dne": json.dumps(meta, sort_keys=True)})
    buffer = io.BytesIO()
    with gzip.GzipFile(fileobj=buffer, mode="wb", mtime=0, compresslevel=6) as gz:
        gz.write(raw)
    write_atomic(Path(path), buffer.getvalue())


def load_dataset(path: Path) -> ImageDataset:
    path = Path(path)
    try:
        compressed = path.read_bytes()
    except FileNotFoundError:
        raise DatasetError(
            f"{path}: no such data-set file (make one with build-emoji or build-folder)"
        ) from None
    except OSError as exc:
        raise DatasetError(f"{path}: cannot read it ({exc.strerror or exc})") from None
    try:
        raw = gzip.decompress(compressed)
        (header_len,) = struct.unpack("<Q", raw[:8])
        meta = json.loads(json.loads(raw[8 : 8 + header_len])["__metadata__"]["dne"])
        tensors = load_tensors(raw)
    except (OSError, EOFError, ValueError, KeyError, struct.error) as exc:
        raise DatasetError(f"{path}: not a data-set file written by save_dataset ({exc})") from exc
    return ImageDataset(
        images=tensors["images"],
        labels=tensors["labels"],
        class_names=tuple(meta.pop("class_names")),
        class_slugs=tuple(meta.pop("class_slugs")),
        names=tuple(meta.pop("names")),
        skin_tone=tensors["skin_tone"],
        meta=meta,
    )
