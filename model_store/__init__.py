"""What a model is: generator architectures, the manifest, and safetensors save/load.

Needs torch, NumPy, safetensors, pydantic and Pillow; never imports ``training`` or ``app``.
"""

from model_store.latents import MAX_SEED, latent_sha256, seed_to_latent, seeds_to_latents
from model_store.manifest import Manifest, TrainingInfo
from model_store.networks import ARCHITECTURES, Generator, GeneratorConfig, build_generator
from model_store.postprocess import to_uint8
from model_store.precision import AMP_CHOICES, autocast, autocast_dtype, precision_name
from model_store.store import (
    DEFAULT_ROOT,
    NAME_PATTERN,
    LoadedModel,
    ModelNotFoundError,
    ModelStore,
    StoreError,
    sha256_file,
)

__all__ = [
    "AMP_CHOICES",
    "ARCHITECTURES",
    "DEFAULT_ROOT",
    "MAX_SEED",
    "NAME_PATTERN",
    "Generator",
    "GeneratorConfig",
    "LoadedModel",
    "Manifest",
    "ModelNotFoundError",
    "ModelStore",
    "StoreError",
    "TrainingInfo",
    "autocast",
    "autocast_dtype",
    "build_generator",
    "latent_sha256",
    "precision_name",
    "seed_to_latent",
    "seeds_to_latents",
    "sha256_file",
    "to_uint8",
]
