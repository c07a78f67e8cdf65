"""The emoji data set: both emoji-datasource packages from npm, 64x64 RGBA, labelled by
emoji.json's category, skin-tone variants marked. Same packages in, same file out."""

from __future__ import annotations

import json
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from training.data.dataset import DatasetError, ImageDataset, save_dataset
from training.data.images import read_image, resize_batch, rgba_array

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
