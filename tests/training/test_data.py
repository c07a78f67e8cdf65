"""Data-set builders on local fixtures (no network): the emoji packages and user folders."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from training.data import (
    EMOJI_CATEGORIES,
    EMOJI_SETS,
    EMOJI_VERSION,
    DatasetError,
    build_emoji_dataset,
    build_folder_dataset,
    load_dataset,
    save_dataset,
)


def png_bytes(colour: tuple[int, int, int, int], size: int = 64, mode: str = "RGBA") -> bytes:
    image = Image.new("RGBA", (size, size), (0, 0, 0, 0))
    image.paste(Image.new("RGBA", (size // 2, size // 2), colour), (size // 4, size // 4))
    if mode == "P":
        image = image.convert("P")
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


EMOJI_JSON = [
    {
        "name": "GRINNING FACE",
        "short_name": "grinning",
        "image": "1f600.png",
        "category": "Smileys & Emotion",
        "sort_order": 1,
        "has_img_google": True,
        "has_img_twitter": True,
    },
    {
        "name": "WAVING HAND SIGN",
        "short_name": "wave",
        "image": "1f44b.png",
        "category": "People & Body",
        "sort_order": 2,
        "has_img_google": True,
        "has_img_twitter": True,
        "skin_variations": {
            "1F3FB": {"image": "1f44b-1f3fb.png", "has_img_google": True, "has_img_twitter": False}
        },
    },
    {
        "name": None,
        "short_name": "flag-fr",
        "image": "1f1eb-1f1f7.png",
        "category": "Flags",
        "sort_order": 3,
        "has_img_google": True,
        "has_img_twitter": True,
    },
    {
        "name": "EMOJI MODIFIER FITZPATRICK TYPE-1-2",
        "short_name": "skin-tone-2",
        "image": "1f3fb.png",
        "category": "Component",
        "sort_order": 4,
        "has_img_google": True,
        "has_img_twitter": True,
    },
]


def write_package(folder: Path, source: str) -> None:
    """A tiny stand-in for emoji-datasource-<source>, laid out as npm packs it."""
    files = {"package/emoji.json": json.dumps(EMOJI_JSON).encode()}
    colours = {
        "1f600.png": (250, 200, 0, 255),
        "1f44b.png": (240, 180, 120, 255),
        "1f44b-1f3fb.png": (250, 220, 190, 255),
        "1f1eb-1f1f7.png": (0, 80, 200, 255),
        "1f3fb.png": (250, 220, 190, 255),
    }
    for name, colour in colours.items():
        # One palette-mode PNG, as some of the real set are.
        mode = "P" if name.startswith("1f1eb") else "RGBA"
        files[f"package/img/{source}/64/{name}"] = png_bytes(colour, mode=mode)
    with tarfile.open(folder / f"emoji-datasource-{source}-{EMOJI_VERSION}.tgz", "w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


@pytest.fixture
def emoji_cache(tmp_path: Path) -> Path:
    cache = tmp_path / "npm"
    cache.mkdir()
    for source in EMOJI_SETS:
        write_package(cache, source)
    return cache


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_emoji_builder_reads_both_sets_drops_components_and_credits_sources(
    emoji_cache: Path, tmp_path: Path
) -> None:
    ds = build_emoji_dataset(emoji_cache, tmp_path / "emoji.dne.gz")
    # google: 3 designs + 1 skin tone; twitter: 3 designs (its skin tone has no image).
    assert len(ds) == 7
    assert ds.images.shape == (7, 4, 64, 64) and ds.images.dtype == torch.uint8
    assert ds.class_names == EMOJI_CATEGORIES and ds.class_slugs[0] == "smileys-emotion"
    assert ds.class_slugs[-1] == "flags"
    labels = [EMOJI_CATEGORIES[i] for i in ds.labels.tolist()]
    assert labels.count("Flags") == 2 and labels.count("People & Body") == 3
    assert ds.skin_tone.tolist() == [0, 0, 1, 0, 0, 0, 0]
    assert ds.names[0] == "google/grinning face" and ds.names[3] == "google/flag-fr"
    # Transparent pixels carry no colour; the palette-mode flag became RGBA.
    alpha = ds.images[:, 3]
    assert (ds.images[:, :3][(alpha == 0).unsqueeze(1).expand(-1, 3, -1, -1)] == 0).all()
    flag = ds.images[3, :, 32, 32].tolist()
    assert flag == [0, 80, 200, 255]
    credits = " ".join(ds.credits())
    assert "Apache-2.0" in credits and "CC-BY-4.0" in credits and "Twitter" in credits

    loaded = load_dataset(tmp_path / "emoji.dne.gz")
    assert torch.equal(loaded.images, ds.images) and torch.equal(loaded.labels, ds.labels)
    assert loaded.names == ds.names and loaded.credits() == ds.credits()


def test_emoji_builder_is_deterministic(emoji_cache: Path, tmp_path: Path) -> None:
    build_emoji_dataset(emoji_cache, tmp_path / "a.dne.gz")
    build_emoji_dataset(emoji_cache, tmp_path / "b.dne.gz")
    assert sha256(tmp_path / "a.dne.gz") == sha256(tmp_path / "b.dne.gz")


def test_emoji_builder_names_a_broken_package(emoji_cache: Path, tmp_path: Path) -> None:
    (emoji_cache / f"emoji-datasource-twitter-{EMOJI_VERSION}.tgz").write_bytes(b"not a tgz")
    with pytest.raises(DatasetError, match="emoji-datasource-twitter"):
        build_emoji_dataset(emoji_cache, tmp_path / "emoji.dne.gz")
    assert not (tmp_path / "emoji.dne.gz").exists()


def test_save_and_load_round_trip_with_a_subset(tmp_path: Path, make_shapes) -> None:
    ds = make_shapes(n=10)
    save_dataset(ds, tmp_path / "s.dne.gz")
    loaded = load_dataset(tmp_path / "s.dne.gz")
    assert torch.equal(loaded.images, ds.images) and loaded.class_names == ds.class_names
    squares = loaded.subset(loaded.labels == 1)
    assert len(squares) == 5 and squares.class_counts() == [0, 5]
    assert squares.names == ds.names[1::2]
    x = loaded.to_float(premultiply=True)
    assert x.min() >= -1 and x.max() <= 1 and x.shape == (10, 4, 16, 16)
    assert "10 images 16x16 RGBA, 2 classes" in loaded.describe()


def test_loading_a_file_that_is_not_a_data_set_names_it(tmp_path: Path) -> None:
    bad = tmp_path / "bad.dne.gz"
    bad.write_bytes(b"hello")
    with pytest.raises(DatasetError, match=r"bad\.dne\.gz"):
        load_dataset(bad)
    with pytest.raises(DatasetError, match=r"missing\.dne\.gz"):
        load_dataset(tmp_path / "missing.dne.gz")


def save_image(path: Path, size: tuple[int, int], colour: tuple, mode: str = "RGB") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, colour).save(path)


def test_folder_builder_finds_classes_resizes_crops_and_composites(tmp_path: Path) -> None:
    photos = tmp_path / "photos"
    save_image(photos / "cats" / "a.jpg", (120, 80), (200, 100, 50))
    save_image(photos / "cats" / "deep" / "b.webp", (50, 50), (10, 20, 30))
    save_image(photos / "dogs" / "c.png", (64, 64), (255, 0, 0, 0), mode="RGBA")
    (photos / "dogs" / "notes.txt").write_text("not an image, ignored")
    ds = build_folder_dataset(photos, tmp_path / "out.dne.gz", resolution=32, background="black")
    assert ds.class_names == ("cats", "dogs") and ds.labels.tolist() == [0, 0, 1]
    assert ds.images.shape == (3, 3, 32, 32)
    assert ds.images[0, :, 16, 16].tolist() == [200, 100, 50]
    assert ds.images[2].max() == 0  # fully transparent red on black is black
    kept = build_folder_dataset(photos, tmp_path / "rgba.dne.gz", resolution=32, background="keep")
    assert kept.images.shape == (3, 4, 32, 32) and kept.images[2, 3].max() == 0
    assert load_dataset(tmp_path / "out.dne.gz").names == ds.names


def test_folder_without_subfolders_is_unconditional(tmp_path: Path) -> None:
    for i in range(3):
        save_image(tmp_path / "flat" / f"{i}.png", (20, 20), (i * 50, 0, 0))
    ds = build_folder_dataset(tmp_path / "flat", tmp_path / "out.dne.gz", resolution=16)
    assert ds.class_names == () and ds.labels.tolist() == [0, 0, 0]


def test_folder_errors_name_the_problem_and_write_nothing(tmp_path: Path) -> None:
    out = tmp_path / "out.dne.gz"
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="no images"):
        build_folder_dataset(tmp_path / "empty", out)
    with pytest.raises(DatasetError, match="not a folder"):
        build_folder_dataset(tmp_path / "nowhere", out)
    save_image(tmp_path / "mixed" / "good.png", (8, 8), (1, 2, 3))
    (tmp_path / "mixed" / "broken.png").write_bytes(b"\x89PNG truncated")
    with pytest.raises(DatasetError, match=r"broken\.png"):
        build_folder_dataset(tmp_path / "mixed", out)
    with pytest.raises(DatasetError, match="not a colour"):
        build_folder_dataset(tmp_path / "mixed", out, background="plaid")
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out")]


def test_build_folder_command_reports_errors_without_a_traceback(tmp_path: Path) -> None:
    import subprocess
    import sys

    (tmp_path / "empty").mkdir()
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "training",
            "build-folder",
            str(tmp_path / "empty"),
            "--out",
            str(tmp_path / "x.dne.gz"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode != 0
    assert "no images" in done.stderr and "Traceback" not in done.stderr


def test_rgba_resampling_does_not_bleed_invisible_colour() -> None:
    from training.data import rgba_array

    image = Image.new("RGBA", (64, 64), (255, 0, 0, 0))  # invisible red everywhere
    image.paste(Image.new("RGBA", (32, 64), (0, 0, 255, 255)), (32, 0))
    small = rgba_array(image, 16)
    edge = small[8, 7:9]
    assert np.all(edge[:, 0] == 0), edge  # no red fringe at the boundary
