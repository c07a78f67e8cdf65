"""A data set from a folder of the user's own images; first-level subfolders are classes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from training.data.dataset import DatasetError, ImageDataset, save_dataset
from training.data.images import IMAGE_SUFFIXES, composite, read_image, rgba_array


def build_folder_dataset(
    folder: Path, out: Path, resolution: int = 64, background: str = "white"
) -> ImageDataset:
    """Every image under ``folder`` (recursive). Images directly inside first-level
    subfolders are labelled by that subfolder (class-conditional data); images at the
    top level, or a folder without subfolders, give unconditional data. ``background``
    is a colour to composite transparency on (RGB output) or ``keep`` (RGBA)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DatasetError(f"{folder}: not a folder")
    files = sorted(
        p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
    )
    if not files:
        raise DatasetError(f"{folder}: no images ({', '.join(IMAGE_SUFFIXES)}) found")
    if background != "keep":
        try:
            Image.new("RGB", (1, 1), background)
        except ValueError:
            raise DatasetError(f"background {background!r} is not a colour (or 'keep')") from None
    groups = [
        p.relative_to(folder).parts[0] if len(p.relative_to(folder).parts) > 1 else ""
        for p in files
    ]
    class_names = tuple(sorted(set(groups))) if all(groups) and len(set(groups)) > 1 else ()
    arrays = [
        composite(rgba_array(read_image(p), resolution), background)
        for p in tqdm(files, desc=folder.name, unit="img")
    ]
    ds = ImageDataset(
        images=torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous(),
        labels=torch.tensor([class_names.index(g) if class_names else 0 for g in groups]),
        class_names=class_names,
        names=tuple(str(p.relative_to(folder)) for p in files),
        meta={"kind": "folder", "description": f"folder {folder.name}", "background": background},
    )
    save_dataset(ds, out)
    return ds
