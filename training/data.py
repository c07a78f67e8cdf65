"""Data sets: one compact file of uint8 images + labels, and the builders that write it.

The file is a safetensors blob, gzip-compressed with a zero timestamp so building the
same data twice gives the same bytes. Its metadata (key ``dne``) carries the class
names, per-image names and the sources with their licences, so credit travels with
the data. Images are stored with straight (not premultiplied) alpha and RGB zeroed
where alpha is 0: invisible colour is noise that would only cost bytes.
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
import re
import struct
import subprocess
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from safetensors.torch import load as load_tensors
from safetensors.torch import save as save_tensors
from tqdm import tqdm

from training.checkpoint import write_atomic

EMOJI_VERSION = "16.0.0"
EMOJI_SETS = ("google", "twitter")
# The nine emoji.json categories users can ask for; "Component" (5 bare skin-tone and
# hair swatches) is not an emoji anyone draws and is dropped.
EMOJI_CATEGORIES = (
    "Smileys & Emotion",
    "People & Body",
    "Animals & Nature",
    "Food & Drink",
    "Travel & Places",
    "Activities",
    "Objects",
    "Symbols",
    "Flags",
)
EMOJI_SOURCES = {
    "google": {
        "package": f"emoji-datasource-google@{EMOJI_VERSION}",
        "artwork": "Noto Emoji, Copyright Google Inc.",
        "licence": "Apache-2.0",
    },
    "twitter": {
        "package": f"emoji-datasource-twitter@{EMOJI_VERSION}",
        "artwork": "Twemoji, Copyright 2020 Twitter, Inc and other contributors",
        "licence": "CC-BY-4.0",
    },
}
EMOJI_METADATA_CREDIT = (
    "emoji-datasource metadata (emoji.json), Copyright (c) 2013 Cal Henderson, MIT"
)
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")


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
        raw = gzip.decompress(path.read_bytes())
        (header_len,) = struct.unpack("<Q", raw[:8])
        meta = json.loads(json.loads(raw[8 : 8 + header_len])["__metadata__"]["dne"])
        tensors = load_tensors(raw)
    except FileNotFoundError:
        raise DatasetError(f"{path}: no such data-set file") from None
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


# --- reading images ---------------------------------------------------------------------


def rgba_array(image: Image.Image, resolution: int) -> np.ndarray:
    """Any PIL image → [R, R, 4] uint8 straight alpha, resized (shorter side) and
    centre-cropped; resampling happens in premultiplied space so edges do not fringe."""
    image = image.convert("RGBA")
    w, h = image.size
    if (w, h) != (resolution, resolution):
        scale = resolution / min(w, h)
        size = (max(resolution, round(w * scale)), max(resolution, round(h * scale)))
        image = image.convert("RGBa").resize(size, Image.Resampling.LANCZOS).convert("RGBA")
        left, top = (size[0] - resolution) // 2, (size[1] - resolution) // 2
        image = image.crop((left, top, left + resolution, top + resolution))
    array = np.array(image, dtype=np.uint8)
    array[array[..., 3] == 0, :3] = 0
    return array


def read_image(path: Path | str, data: bytes | None = None) -> Image.Image:
    try:
        image = Image.open(io.BytesIO(data) if data is not None else path)
        image.load()
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise DatasetError(f"{path}: cannot read image ({exc})") from exc
    return image


def composite(array: np.ndarray, background: str) -> np.ndarray:
    """[R, R, 4] straight alpha → [R, R, 3] over a solid colour, or unchanged for "keep"."""
    if background == "keep":
        return array
    colour = np.array(Image.new("RGB", (1, 1), background).getpixel((0, 0)), dtype=np.float32)
    alpha = array[..., 3:].astype(np.float32) / 255.0
    rgb = array[..., :3].astype(np.float32) * alpha + colour * (1.0 - alpha)
    return np.round(rgb).astype(np.uint8)


# --- the emoji data set -----------------------------------------------------------------


def fetch_emoji_packages(cache_dir: Path) -> dict[str, Path]:
    """The two npm tarballs, packed into ``cache_dir`` with ``npm pack`` when missing."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name in EMOJI_SETS:
        path = cache_dir / f"emoji-datasource-{name}-{EMOJI_VERSION}.tgz"
        if not path.is_file():
            spec = EMOJI_SOURCES[name]["package"]
            print(f"npm pack {spec} → {cache_dir}")
            try:
                subprocess.run(
                    ["npm", "pack", "--silent", spec],
                    cwd=cache_dir,
                    check=True,
                    stdout=subprocess.DEVNULL,
                )
            except (OSError, subprocess.CalledProcessError) as exc:
                raise DatasetError(
                    f"cannot fetch {spec} with npm pack ({exc}); put the .tgz "
                    f"into {cache_dir} by hand"
                ) from exc
        paths[name] = path
    return paths


def emoji_entries(
    emoji_json: list[dict[str, Any]], source: str
) -> Iterator[tuple[str, str, int, bool]]:
    """(image file, name, category index, skin-tone variant) in emoji.json's sort order."""
    has = f"has_img_{source}"
    for entry in sorted(emoji_json, key=lambda e: e["sort_order"]):
        if entry["category"] not in EMOJI_CATEGORIES:
            continue
        label = EMOJI_CATEGORIES.index(entry["category"])
        name = (entry.get("name") or entry["short_name"]).lower()
        if entry.get(has):
            yield entry["image"], name, label, False
        for tones, variant in sorted((entry.get("skin_variations") or {}).items()):
            if variant.get(has):
                yield variant["image"], f"{name} ({tones.lower()})", label, True


def read_emoji_package(tgz: Path, source: str) -> Iterator[tuple[np.ndarray, str, int, bool]]:
    try:
        with tarfile.open(tgz, "r:gz") as tar:
            members = {m.name: m for m in tar.getmembers() if m.isfile()}
            emoji_json = json.load(tar.extractfile(members["package/emoji.json"]))
            entries = list(emoji_entries(emoji_json, source))
            for file, name, label, skin in tqdm(entries, desc=source, unit="img"):
                member = members.get(f"package/img/{source}/64/{file}")
                if member is None:
                    raise DatasetError(f"{tgz}: emoji.json lists {file} but the package lacks it")
                data = tar.extractfile(member).read()
                image = read_image(f"{tgz.name}:{member.name}", data)
                yield rgba_array(image, 64), f"{source}/{name}", label, skin
    except (tarfile.TarError, KeyError, OSError, json.JSONDecodeError) as exc:
        raise DatasetError(f"{tgz}: not a readable emoji-datasource package ({exc})") from exc


def build_emoji_dataset(cache_dir: Path, out: Path, resolution: int = 64) -> ImageDataset:
    """Both emoji sets, 64x64 RGBA, labelled by category; deterministic order and bytes."""
    packages = fetch_emoji_packages(cache_dir)
    rows = [row for source in EMOJI_SETS for row in read_emoji_package(packages[source], source)]
    if not rows:
        raise DatasetError(f"no emoji images found in {cache_dir}")
    images = np.stack([r[0] for r in rows])
    ds = ImageDataset(
        images=resize_batch(torch.from_numpy(images).permute(0, 3, 1, 2).contiguous(), resolution),
        labels=torch.tensor([r[2] for r in rows], dtype=torch.int64),
        class_names=EMOJI_CATEGORIES,
        names=tuple(r[1] for r in rows),
        skin_tone=torch.tensor([r[3] for r in rows], dtype=torch.uint8),
        meta={
            "kind": "emoji",
            "description": f"emoji-datasource-google+twitter {EMOJI_VERSION}",
            "sources": [EMOJI_SOURCES[s] for s in EMOJI_SETS],
            "credits": [
                *(
                    f"{v['artwork']}, {v['licence']} (via {v['package']})"
                    for v in EMOJI_SOURCES.values()
                ),
                EMOJI_METADATA_CREDIT,
            ],
        },
    )
    save_dataset(ds, out)
    return ds


def resize_batch(images: torch.Tensor, resolution: int) -> torch.Tensor:
    """Emoji come at 64 px; other training resolutions resize in premultiplied space."""
    if images.shape[-1] == resolution:
        return images
    rows = [
        rgba_array(Image.fromarray(im.permute(1, 2, 0).numpy(), "RGBA"), resolution)
        for im in images
    ]
    return torch.from_numpy(np.stack(rows)).permute(0, 3, 1, 2).contiguous()


# --- a folder of the user's images ------------------------------------------------------


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


# --- command line -----------------------------------------------------------------------


def add_data_commands(sub: argparse._SubParsersAction) -> None:
    emoji = sub.add_parser(
        "build-emoji",
        help="build the emoji data set from the npm emoji-datasource packages",
        description=f"Pack emoji-datasource-google and -twitter {EMOJI_VERSION} with npm into "
        "--cache (or use .tgz files already there), read their 64x64 PNGs and emoji.json "
        "categories and write one compressed data-set file. Same inputs → same file.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    emoji.add_argument(
        "--cache",
        type=Path,
        default=Path("~/.cache/dne/npm").expanduser(),
        help="folder for the npm .tgz packages",
    )
    emoji.add_argument(
        "--out", type=Path, default=Path("data/emoji.dne.gz"), help="data-set file to write"
    )
    emoji.add_argument("--resolution", type=int, default=64, help="image edge in pixels")
    emoji.set_defaults(func=cmd_build_emoji)

    folder = sub.add_parser(
        "build-folder",
        help="build a data set from a folder of your own images",
        description="Read every png/jpg/webp under FOLDER (recursively), resize and centre-crop "
        "to --resolution, and write one data-set file. First-level subfolders become classes.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    folder.add_argument("folder", type=Path, help="folder of images")
    folder.add_argument("--out", type=Path, required=True, help="data-set file to write")
    folder.add_argument("--resolution", type=int, default=64, help="image edge in pixels")
    folder.add_argument(
        "--background",
        default="white",
        help="colour to composite transparent images on, or 'keep' for RGBA",
    )
    folder.set_defaults(func=cmd_build_folder)


def cmd_build_emoji(args: argparse.Namespace) -> int:
    ds = build_emoji_dataset(args.cache, args.out, args.resolution)
    print(f"wrote {args.out}: {ds.describe()}; per class {ds.class_counts()}")
    return 0


def cmd_build_folder(args: argparse.Namespace) -> int:
    try:
        ds = build_folder_dataset(args.folder, args.out, args.resolution, args.background)
    except DatasetError as exc:
        raise SystemExit(f"error: {exc}") from None
    print(f"wrote {args.out}: {ds.describe()}")
    return 0
