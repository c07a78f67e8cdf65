"""Feature extractors in the store (evaluation's frozen networks) and metric updates."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from model_store import ModelStore, StoreError, build_generator
from model_store.networks.features import FeatureNet, FeatureNetConfig, build_feature_net

TINY = FeatureNetConfig(channels=4, resolution=16, num_classes=3, widths=(8, 16))


def tiny_features(seed: int = 0) -> FeatureNet:
    torch.manual_seed(seed)
    return FeatureNet(TINY).eval()


def test_feature_extractor_round_trip_gives_the_same_features(tmp_path: Path) -> None:
    store = ModelStore(tmp_path)
    net = tiny_features()
    manifest = store.save_feature_extractor(net, name="feats", class_names=["a", "b", "c"])
    assert manifest.kind == "feature_extractor" and manifest.z_dim == 16
    assert manifest.weights_file == "features.safetensors"
    loaded = store.load_feature_extractor("feats")
    assert not loaded.network.training
    assert not any(p.requires_grad for p in loaded.network.parameters())
    x = torch.rand(5, 4, 16, 16) * 2 - 1
    torch.testing.assert_close(loaded.network.features(x), net.features(x), rtol=0, atol=0)
    assert loaded.network.features(torch.rand(2, 4, 40, 40)).shape == (2, 16)  # resized
    with pytest.raises(ValueError, match="takes"):
        loaded.network.features(torch.rand(2, 3, 16, 16))


def test_feature_extractors_are_not_generators(tmp_path: Path) -> None:
    store = ModelStore(tmp_path)
    store.save_feature_extractor(tiny_features(), name="feats")
    assert store.manifests() == [] and [m.name for m in store.manifests(None)] == ["feats"]
    with pytest.raises(StoreError, match="not a generator"):
        store.load("feats")
    gen = build_generator("dcgan", {"ngf": 8, "resolution": 16, "z_dim": 8})
    store.save(gen, name="gen")
    with pytest.raises(StoreError, match="not features"):
        store.load_feature_extractor("gen")


def test_tampered_feature_weights_are_refused(tmp_path: Path) -> None:
    store = ModelStore(tmp_path)
    store.save_feature_extractor(tiny_features(), name="feats")
    weights = tmp_path / "feats" / "1" / "features.safetensors"
    weights.write_bytes(weights.read_bytes()[:-1] + b"\0")
    with pytest.raises(StoreError, match="sha256"):
        store.load_feature_extractor("feats")


def test_update_metrics_merges_atomically_and_leaves_the_weights_alone(tmp_path: Path) -> None:
    store = ModelStore(tmp_path)
    gen = build_generator("dcgan", {"ngf": 8, "resolution": 16, "z_dim": 8})
    before = store.save(gen, name="gen")
    store.update_metrics("gen", 1, {"fd": 1.5, "feature_space": "feats v1"})
    after = store.update_metrics("gen", "latest", {"fd": 1.25, "kid": {"mean": 0.01}})
    assert after.metrics == {"fd": 1.25, "feature_space": "feats v1", "kid": {"mean": 0.01}}
    assert store.manifest("gen").metrics == after.metrics
    assert after.weights_sha256 == before.weights_sha256
    assert after.created_at == before.created_at
    store.load("gen")  # still loads: only the manifest changed
    folder = tmp_path / "gen" / "1"
    assert sorted(p.name for p in folder.iterdir() if p.name.startswith(".")) == []
    assert json.loads((folder / "manifest.json").read_text())["metrics"]["fd"] == 1.25
    replaced = store.update_metrics("gen", 1, {"x": 1}, replace=True)
    assert replaced.metrics == {"x": 1}


def test_build_feature_net_names_unknown_architectures() -> None:
    with pytest.raises(ValueError, match="unknown feature architecture"):
        build_feature_net("inception", {})
    net = build_feature_net("convnet", {**TINY.to_dict(), "widths": [8, 16]})  # JSON lists
    assert net.config == TINY
