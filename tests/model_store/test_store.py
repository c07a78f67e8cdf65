"""The model store: round trips, versions, and every way a stored model can be broken."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from model_store import (
    ModelNotFoundError,
    ModelStore,
    StoreError,
    build_generator,
    seeds_to_latents,
)

TINY = {"ngf": 8, "resolution": 16, "num_classes": 3, "z_dim": 16}


def tiny_generator(seed: int = 0, **overrides: object) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_generator("dcgan", {**TINY, **overrides}).eval()


def store_tiny(root: Path, **kw: object) -> ModelStore:
    store = ModelStore(root)
    store.save(
        tiny_generator(),
        name="tiny",
        class_names=["A b", "C", "D"],
        class_slugs=["a-b", "c", "d"],
        alpha="premultiplied",
        **kw,
    )
    return store


def test_round_trip_gives_the_same_images(tmp_path: Path) -> None:
    g = tiny_generator()
    store = ModelStore(tmp_path)
    store.save(g, name="tiny", class_names=["a", "b", "c"], class_slugs=["a", "b", "c"])
    loaded = store.load("tiny")
    z, labels = seeds_to_latents([1, 2, 3], 16), torch.tensor([0, 1, 2])
    with torch.no_grad():
        assert torch.equal(loaded.generator(z, labels), g(z, labels))
    assert not loaded.generator.training
    assert loaded.manifest.conditional and loaded.manifest.channels == 4


def test_versions_count_up_and_latest_is_highest(tmp_path: Path) -> None:
    store = store_tiny(tmp_path)
    store.save(tiny_generator(1), name="tiny")
    assert store.versions("tiny") == [1, 2]
    assert store.manifest("tiny").version == 2
    assert store.manifest("tiny", 1).version == 1
    assert [m.ref for m in store.manifests()] == ["tiny/1", "tiny/2"]
    with pytest.raises(ModelNotFoundError, match="no version"):
        store.resolve("tiny", 3)
    with pytest.raises(ModelNotFoundError, match="no model named"):
        store.resolve("nope")
    with pytest.raises(StoreError, match="never overwritten"):
        store.save(tiny_generator(), name="tiny", version=1)


def test_save_leaves_no_partial_version_on_failure(tmp_path: Path) -> None:
    store = ModelStore(tmp_path)
    with pytest.raises(ValueError):
        store.save(tiny_generator(), name="tiny", channels_typo=1)  # rejected by Manifest
    assert store.versions("tiny") == []
    assert list((tmp_path / "tiny").iterdir()) == []


def test_class_lookup_by_slug_name_or_index(tmp_path: Path) -> None:
    manifest = store_tiny(tmp_path).manifest("tiny")
    assert manifest.class_index("a-b") == 0
    assert manifest.class_index("A B") == 0
    assert manifest.class_index("2") == 2
    with pytest.raises(KeyError):
        manifest.class_index("flags")


@pytest.mark.parametrize(
    ("breakage", "message"),
    [
        ("delete_weights", "generator.safetensors: missing"),
        ("flip_a_byte", "does not match the manifest"),
        ("delete_manifest", "manifest.json: missing"),
        ("bad_json", "invalid manifest"),
        ("wrong_architecture", "do not fit"),
        ("unknown_architecture", "unknown architecture"),
        ("seed_draw_changed", "seed 0 draws a different latent"),
    ],
)
def test_a_broken_model_fails_naming_the_file(tmp_path: Path, breakage: str, message: str) -> None:
    store = store_tiny(tmp_path)
    folder = tmp_path / "tiny" / "1"
    manifest_path, weights = folder / "manifest.json", folder / "generator.safetensors"
    manifest = json.loads(manifest_path.read_text())
    if breakage == "delete_weights":
        weights.unlink()
    elif breakage == "flip_a_byte":
        data = bytearray(weights.read_bytes())
        data[-1] ^= 0xFF
        weights.write_bytes(bytes(data))
    elif breakage == "delete_manifest":
        manifest_path.unlink()
    elif breakage == "bad_json":
        manifest_path.write_text("{not json")
    elif breakage == "wrong_architecture":
        manifest["config"]["ngf"] = 16
        manifest_path.write_text(json.dumps(manifest))
    elif breakage == "unknown_architecture":
        manifest["architecture"] = "nope"
        manifest_path.write_text(json.dumps(manifest))
    elif breakage == "seed_draw_changed":
        manifest["seed0_latent_sha256"] = "0" * 64
        manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(StoreError, match=message) as err:
        store.load("tiny")
    assert str(folder) in str(err.value)


def test_weights_are_safetensors_not_pickle(tmp_path: Path) -> None:
    store_tiny(tmp_path)
    head = (tmp_path / "tiny" / "1" / "generator.safetensors").read_bytes()[:16]
    assert not head.startswith(b"PK") and not head.startswith(b"\x80")  # zip / pickle


def test_a_changed_seed_draw_names_numpy_not_torch(tmp_path: Path) -> None:
    store = store_tiny(tmp_path)
    manifest_path = tmp_path / "tiny" / "1" / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["seed0_latent_sha256"] = "0" * 64
    manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(StoreError) as err:
        store.load("tiny")
    message = str(err.value)
    # The draw is NumPy's PCG64: the message sends the reader to the library that changed.
    assert "NumPy" in message and np.__version__ in message and "PCG64" in message
    assert "torch" not in message
