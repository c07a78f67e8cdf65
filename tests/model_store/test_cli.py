"""``python -m model_store``: paint seeds, grids, animations and sums without a server."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from model_store import ModelStore, build_generator
from model_store.cli import main


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("store")
    torch.manual_seed(0)
    config = {"z_dim": 8, "num_classes": 2, "channels": 4, "resolution": 8, "ngf": 4}
    g = build_generator("dcgan", {**config, "conditioning": "cbn"}).eval()
    ModelStore(root).save(
        g,
        name="tiny",
        alpha="premultiplied",
        class_names=["Cats", "Dogs"],
        class_slugs=["cats", "dogs"],
        credits=["made up for a test"],
    )
    return root


def opened(path: Path) -> Image.Image:
    """The image, loaded and its file closed."""
    with Image.open(path) as image:
        image.load()
        return image


def paint(store: Path, *args: str) -> int:
    return main(["--store", str(store), "paint", "--model", "tiny", *args])


def test_seeds_become_one_png_each_with_their_provenance(store: Path, tmp_path: Path) -> None:
    assert paint(store, "3-5", "9", "--out", str(tmp_path)) == 0
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["tiny-1-3.png", "tiny-1-4.png", "tiny-1-5.png", "tiny-1-9.png"]
    image = opened(tmp_path / "tiny-1-4.png")
    assert image.size == (8, 8) and image.mode == "RGBA"
    assert image.text["Seed"] == "4" and image.text["Model"] == "tiny"
    assert image.text["Category"] == "cats"  # seed 4's own: 4 % 2
    assert "made up" in image.text["Credit"]


def test_a_grid_a_category_a_size_and_truncation(store: Path, tmp_path: Path) -> None:
    out = tmp_path / "grid.png"
    args = ["0-5", "--grid", "--columns", "3", "--category", "dogs", "--size", "16"]
    assert paint(store, *args, "--truncation", "0.5", "--out", str(out)) == 0
    image = opened(out)
    assert image.size == (48, 32)
    assert image.text["Seed"] == "0 .. 5" and image.text["Truncation"] == "0.5"


@pytest.mark.parametrize("suffix", ["gif", "webp", "png"])
def test_an_interpolation_through_the_seeds(store: Path, tmp_path: Path, suffix: str) -> None:
    out = tmp_path / f"morph.{suffix}"
    assert paint(store, "1", "2", "3", "--interpolate", "--steps", "4", "--out", str(out)) == 0
    with Image.open(out) as image:
        if suffix == "png":
            assert image.size == (7 * 8, 8)  # 3 + 3 frames between, and the last seed
        else:
            assert image.n_frames == 7


def test_a_weighted_sum(store: Path, tmp_path: Path) -> None:
    out = tmp_path / "sum.png"
    assert paint(store, "1", "2", "--weights", "1,-1", "--out", str(out)) == 0
    assert opened(out).text["Seed"] == "+1·1 -1·2"
    one = tmp_path / "one.png"
    assert paint(store, "1", "--weights", "2", "--out", str(one)) == 0  # rescaled: seed 1
    assert paint(store, "1", "--out", str(tmp_path)) == 0
    alone = np.asarray(opened(tmp_path / "tiny-1-1.png")).astype(int)
    assert np.abs(np.asarray(opened(one)).astype(int) - alone).max() <= 1


@pytest.mark.parametrize(
    ("args", "status", "says"),
    [
        (["x-3"], 2, "not a seed"),
        (["5-1"], 2, "upwards"),
        (["1", "--category", "birds"], 2, "not one of tiny's: cats, dogs"),
        (["1", "--interpolate"], 2, "at least two seeds"),
        (["1", "2", "--interpolate", "--out", "a.avi"], 2, ".gif, .webp or .png"),
        (["1", "2", "--weights", "1"], 2, "1 weights for 2 seeds"),
        (["1", "--truncation", "3"], 2, "0 .. 2"),
        (["1", "--version", "7"], 1, "no version"),
    ],
)
def test_mistakes_end_in_one_line(store: Path, capsys, args, status: int, says: str) -> None:
    assert paint(store, *args) == status
    err = capsys.readouterr().err
    assert says in err and err.count("\n") == 1 and "Traceback" not in err


def test_it_runs_as_python_m_model_store(store: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "model_store", "--store", str(store), "list"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert done.stdout.startswith("tiny/1\t8px\tcats, dogs")
    assert done.stdout.count("\n") == 1
