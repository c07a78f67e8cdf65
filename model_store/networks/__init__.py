"""Generator architectures by name. A stored model names one and carries its config,
so a loader rebuilds the module from the manifest alone (no pickled code)."""

from __future__ import annotations

from dataclasses import fields
from typing import Any

from model_store.networks.base import Generator, GeneratorConfig, TruncationMode
from model_store.networks.dcgan import DCGANConfig, DCGANGenerator
from model_store.networks.mlp import MLPConfig, MLPGenerator
from model_store.networks.resnet import ResNetConfig, ResNetGenerator

ARCHITECTURES: dict[str, tuple[type[GeneratorConfig], type[Generator]]] = {
    "mlp": (MLPConfig, MLPGenerator),
    "dcgan": (DCGANConfig, DCGANGenerator),
    "resnet": (ResNetConfig, ResNetGenerator),
}


def make_config(architecture: str, values: dict[str, Any]) -> GeneratorConfig:
    """Build an architecture's config from plain (JSON) values; lists become tuples."""
    if architecture not in ARCHITECTURES:
        known = ", ".join(sorted(ARCHITECTURES))
        raise ValueError(f"unknown architecture {architecture!r} (known: {known})")
    config_cls = ARCHITECTURES[architecture][0]
    names = {f.name for f in fields(config_cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ValueError(f"{architecture} config has no field(s) {', '.join(unknown)}")
    clean = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
    return config_cls(**clean)


def build_generator(architecture: str, values: dict[str, Any]) -> Generator:
    """A freshly initialised generator of the named architecture."""
    config = make_config(architecture, values)
    return ARCHITECTURES[architecture][1](config)


__all__ = [
    "ARCHITECTURES",
    "Generator",
    "GeneratorConfig",
    "TruncationMode",
    "build_generator",
    "make_config",
]
