"""The model store: ``<root>/<name>/<version>/`` holding weights, manifest and samples.

Weights are safetensors only (never pickle) and checked against the manifest's sha256;
anything wrong stops loading with a ``StoreError`` naming the file and the problem.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from pydantic import ValidationError
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from model_store.atomic import write_atomic
from model_store.latents import latent_sha256, seed_to_latent
from model_store.manifest import Manifest
from model_store.networks import ARCHITECTURES, Generator, build_generator
from model_store.networks.features import FEATURE_ARCHITECTURES, FeatureNet, build_feature_net

DEFAULT_ROOT = Path(__file__).resolve().parent / "models"
MANIFEST_FILE = "manifest.json"
NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")


class StoreError(Exception):
    """A stored model is missing, malformed or does not match its manifest."""


class ModelNotFoundError(StoreError, LookupError):
    """No model (or no such version) by that name."""


@dataclass(frozen=True)
class LoadedFeatures:
    manifest: Manifest
    network: FeatureNet  # in eval mode, frozen, on ``device``
    device: torch.device
    path: Path


@dataclass(frozen=True)
class LoadedModel:
    manifest: Manifest
    generator: Generator  # in eval mode, on ``device``
    device: torch.device
    path: Path


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def architecture_of(module: torch.nn.Module, registry: dict[str, tuple[Any, type]]) -> str:
    """The name ``module``'s class is registered under (generators or feature networks)."""
    for name, (_, module_cls) in registry.items():
        if type(module) is module_cls:
            return name
    raise StoreError(f"{type(module).__name__} is not a registered architecture")


class ModelStore:
    """A folder of stored models. ``version`` is an int or ``"latest"`` (the highest)."""

    def __init__(self, root: Path | str = DEFAULT_ROOT) -> None:
        self.root = Path(root)

    def names(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if self.versions(p.name))

    def versions(self, name: str) -> list[int]:
        folder = self.root / name
        if not NAME_PATTERN.match(name) or not folder.is_dir():
            return []
        return sorted(int(p.name) for p in folder.iterdir() if p.name.isdigit() and p.is_dir())

    def resolve(self, name: str, version: int | str = "latest") -> Path:
        """The folder of ``name`` at ``version``; ModelNotFoundError if there is none."""
        versions = self.versions(name)
        if not versions:
            raise ModelNotFoundError(f"no model named {name!r} in {self.root}")
        if version == "latest":
            return self.root / name / str(versions[-1])
        number = int(version) if str(version).isdigit() else -1
        if number not in versions:
            raise ModelNotFoundError(f"model {name!r} has no version {version!r} (has {versions})")
        return self.root / name / str(number)

    def manifest(self, name: str, version: int | str = "latest") -> Manifest:
        return read_manifest(self.resolve(name, version))

    def manifests(self, kind: str | None = "generator") -> list[Manifest]:
        """Every stored version's manifest (of one kind, or all with ``kind=None``)."""
        found = [
            read_manifest(self.root / name / str(v))
            for name in self.names()
            for v in self.versions(name)
        ]
        return [m for m in found if kind is None or m.kind == kind]

    def load(
        self, name: str, version: int | str = "latest", device: str | torch.device = "cpu"
    ) -> LoadedModel:
        """Rebuild the generator from its manifest and load its checked weights."""
        manifest, generator, device, path = self._load(name, version, "generator", build_generator)
        generator.truncation_mode = manifest.truncation  # its stem means: on first use
        return LoadedModel(manifest, generator.to(device), torch.device(device), path)

    def _load(
        self,
        name: str,
        version: int | str,
        kind: str,
        build: Callable[[str, dict[str, Any]], torch.nn.Module],
        device: str | torch.device = "cpu",
    ) -> tuple[Manifest, Any, torch.device, Path]:
        """Rebuild a stored network of ``kind`` from its manifest; load its checked weights."""
        path = self.resolve(name, version)
        manifest = read_manifest(path)
        if manifest.kind != kind:
            wanted = {"generator": "a generator", "feature_extractor": "features"}[kind]
            raise StoreError(f"{path / MANIFEST_FILE}: kind is {manifest.kind!r}, not {wanted}")
        if kind == "generator":
            check_seed_draw(path / MANIFEST_FILE, manifest)
        try:
            network = build(manifest.architecture, manifest.config)
        except (TypeError, ValueError) as e:
            raise StoreError(f"{path / MANIFEST_FILE}: bad architecture config: {e}") from e
        state = read_weights(path / manifest.weights_file, manifest.weights_sha256)
        load_state(network, state, path / manifest.weights_file)
        device = torch.device(device)
        return manifest, network.to(device).eval().requires_grad_(False), device, path

    def save(
        self,
        generator: Generator,
        *,
        name: str,
        version: int | None = None,
        sample_grid: Image.Image | None = None,
        extra_files: dict[str, str | bytes] | None = None,
        **manifest_fields: Any,
    ) -> Manifest:
        """Store ``generator`` as ``name``/``version`` (default: next free); atomic."""
        files = dict(extra_files or {})
        if sample_grid is not None:
            png = io.BytesIO()
            sample_grid.save(png, format="PNG")
            files["samples.png"] = png.getvalue()
        manifest_fields |= {
            "z_dim": generator.config.z_dim,
            "truncation": generator.truncation_mode,
            "sample_grid": "samples.png" if sample_grid is not None else None,
        }
        return self._save(generator, name, version, ARCHITECTURES, files, **manifest_fields)

    def save_feature_extractor(
        self, network: FeatureNet, *, name: str, version: int | None = None, **fields: Any
    ) -> Manifest:
        """Store a frozen evaluation network (``kind="feature_extractor"``); atomic.

        Its manifest's ``z_dim`` is the feature size (no latent goes in; the field is kept
        so one schema serves both kinds)."""
        fields |= {"kind": "feature_extractor", "z_dim": network.config.feature_dim}
        fields |= {"weights_file": "features.safetensors", "sample_grid": None}
        return self._save(network, name, version, FEATURE_ARCHITECTURES, {}, **fields)

    def _save(
        self,
        network: torch.nn.Module,
        name: str,
        version: int | None,
        registry: dict[str, tuple[Any, type]],
        files: dict[str, str | bytes],
        *,
        z_dim: int,
        weights_file: str = "generator.safetensors",
        **manifest_fields: Any,
    ) -> Manifest:
        """Write weights, ``files`` and the manifest into a temporary folder, then rename it
        to ``name/version``: a reader sees no version or a whole one, never a part.
        ``registry`` names the architecture (generators or feature networks)."""
        if not NAME_PATTERN.match(name):
            raise StoreError(f"model name {name!r} must match {NAME_PATTERN.pattern}")
        version = version or (max(self.versions(name), default=0) + 1)
        final = self.root / name / str(version)
        if final.exists():
            raise StoreError(f"{final} already exists; versions are never overwritten")
        final.parent.mkdir(parents=True, exist_ok=True)
        config = network.config
        tmp = Path(tempfile.mkdtemp(prefix=f".{version}-", dir=final.parent))
        try:
            weights = tmp / weights_file
            state = {k: v.detach().cpu().contiguous() for k, v in network.state_dict().items()}
            save_file(state, str(weights), metadata={"format": "pt"})
            for filename, content in files.items():
                data = content.encode() if isinstance(content, str) else content
                (tmp / filename).write_bytes(data)
            manifest = Manifest(
                name=name,
                version=version,
                architecture=architecture_of(network, registry),
                config=json.loads(json.dumps(config.to_dict())),
                z_dim=z_dim,
                resolution=config.resolution,
                channels=config.channels,
                weights_file=weights_file,
                weights_sha256=sha256_file(weights),
                seed0_latent_sha256=latent_sha256(seed_to_latent(0, z_dim)),
                **manifest_fields,
            )
            (tmp / MANIFEST_FILE).write_text(manifest.model_dump_json(indent=2) + "\n")
            os.rename(tmp, final)  # atomic: a reader sees no version or a whole one
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return manifest

    # --- feature extractors (evaluation) and metrics -----------------------------------

    def load_feature_extractor(
        self, name: str, version: int | str = "latest", device: str | torch.device = "cpu"
    ) -> LoadedFeatures:
        """Rebuild a stored feature network from its manifest and load its checked weights."""
        loaded = self._load(name, version, "feature_extractor", build_feature_net, device)
        return LoadedFeatures(*loaded)

    def update_metrics(
        self, name: str, version: int | str, metrics: dict[str, Any], replace: bool = False
    ) -> Manifest:
        """Merge ``metrics`` into a stored version's manifest (or replace them); atomic.

        Only the manifest changes: weights and their sha256 stay as they were stored."""
        path = self.resolve(name, version)
        manifest = read_manifest(path)
        merged = dict(metrics) if replace else {**manifest.metrics, **metrics}
        updated = Manifest.model_validate(
            {**manifest.model_dump(), "metrics": json.loads(json.dumps(merged))}
        )
        write_atomic(path / MANIFEST_FILE, updated.model_dump_json(indent=2) + "\n")
        return updated


def read_manifest(folder: Path) -> Manifest:
    path = folder / MANIFEST_FILE
    try:
        return Manifest.model_validate_json(path.read_bytes())
    except FileNotFoundError as e:
        raise StoreError(f"{path}: missing") from e
    except ValidationError as e:
        raise StoreError(f"{path}: invalid manifest: {e}") from e


def read_weights(path: Path, expected_sha256: str) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise StoreError(f"{path}: missing")
    actual = sha256_file(path)
    if actual != expected_sha256:
        raise StoreError(f"{path}: sha256 {actual} does not match the manifest's {expected_sha256}")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError) as e:
        raise StoreError(f"{path}: not a readable safetensors file: {e}") from e


def load_state(module: torch.nn.Module, state: dict[str, torch.Tensor], path: Path) -> None:
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise StoreError(f"{path}: weights do not fit the manifest's architecture: {e}") from e


def check_seed_draw(path: Path, manifest: Manifest) -> None:
    """Seeds must name the latents they named when the model was stored."""
    actual = latent_sha256(seed_to_latent(0, manifest.z_dim))
    if actual != manifest.seed0_latent_sha256:
        raise StoreError(
            f"{path}: seed 0 draws a different latent here (sha256 {actual}, manifest "
            f"{manifest.seed0_latent_sha256}); the draw is NumPy's PCG64 standard_normal, "
            f"so NumPy {np.__version__} draws differently from the NumPy that stored the "
            "model, and seeds would not name the images they named then"
        )
