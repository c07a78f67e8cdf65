"""From a request's values to an ``ImageSpec``: everything that determines one image's bytes.

What the routes' types cannot check (it depends on the model: latent length, category,
size limit) is checked here, raising ``ApiError`` with the field it is about.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import torch

from app.errors import ApiError
from app.inputs import MIN_SIZE
from app.registry import ServedModel
from model_store import Manifest, seed_to_latent


@dataclass(frozen=True)
class ImageOptions:
    """What a client may choose besides the seed or latent (parsed by app/inputs.py)."""

    model: str | None = None
    category: str | None = None
    truncation: float = 1.0
    size: int | None = None


@dataclass(frozen=True)
class Latent:
    """One point of a model's latent space, and its name."""

    z: torch.Tensor  # [z_dim] float32, on the CPU
    source: str  # "seed-<n>" or "latent-<sha256>": names the latent in cache keys
    class_seed: int  # picks the class when none is asked for, so a seed names one image


def seed_latent(m: Manifest, seed: int) -> Latent:
    return Latent(seed_to_latent(seed, m.z_dim), f"seed-{seed}", seed)


def given_latent(m: Manifest, values: list[float]) -> Latent:
    if len(values) != m.z_dim:
        raise ApiError(
            422, f"latent: {m.name} takes {m.z_dim} numbers, got {len(values)}", "latent"
        )
    z = torch.tensor(values, dtype=torch.float32)
    digest = hashlib.sha256(z.numpy().tobytes()).hexdigest()
    return Latent(z, f"latent-{digest}", int(digest[:15], 16))


@dataclass(frozen=True)
class ImageSpec:
    """Everything that determines the bytes of one image."""

    model: ServedModel  # resolved once per request: a later default switch does not move it
    latent: torch.Tensor
    source: str
    label: int | None
    psi: float
    size: int

    @property
    def cache_key(self) -> str:
        # repr(psi) round-trips the float exactly: two truncations never share a key; the
        # truncation mode is named, since it changed what psi paints for emoji v1. The
        # precision is in it so replicas that paint in another one (DNE_AMP) never share
        # bytes or an ETag with fp32 ones.
        m, precision = self.model.manifest, self.model.engine.precision
        psi = f"{m.truncation}-{self.psi!r}"
        return (
            f"dne:png:{m.name}:{m.version}:{precision}:{self.source}:{self.label}:{psi}:{self.size}"
        )

    @property
    def etag(self) -> str:
        """Names the image, not its bytes: weak, since another replica or device may paint
        it one grey level apart (docs/design.md, "Bytes and links")."""
        return 'W/"' + hashlib.sha256(self.cache_key.encode()).hexdigest()[:32] + '"'

    @property
    def category_slug(self) -> str | None:
        slugs = self.model.manifest.class_slugs
        return slugs[self.label] if self.label is not None and slugs else None


class Specs:
    """Builds ``ImageSpec``s under the service's limits (settings)."""

    def __init__(self, max_size: int) -> None:
        self.max_size = max_size

    def image(self, served: ServedModel, options: ImageOptions, latent: Latent) -> ImageSpec:
        m = served.manifest
        return ImageSpec(
            model=served,
            latent=latent.z,
            source=latent.source,
            label=class_label(m, options.category, latent.class_seed),
            psi=options.truncation,
            size=output_size(m, options.size, self.max_size),
        )


def class_label(m: Manifest, category: str | None, class_seed: int) -> int | None:
    """The class: the one asked for (by its slug), else one derived from the seed (or
    latent), so a seed names one image even on a conditional model."""
    if not m.conditional:
        if category is not None:
            raise ApiError(422, f"category: {m.name} has no categories", "category")
        return None
    if category is None:
        return class_seed % len(m.class_names)
    if category not in m.class_slugs:
        known = ", ".join(m.class_slugs)
        raise ApiError(422, f"category: not one of {m.name}'s: {known}", "category")
    return m.class_slugs.index(category)


def output_size(m: Manifest, size: int | None, max_size: int) -> int:
    if size is None:
        return m.resolution
    if not MIN_SIZE <= size <= max_size:
        raise ApiError(422, f"size: must be {MIN_SIZE} .. {max_size} pixels", "size")
    return size
