"""From a request's values to an ``ImageSpec``: everything that determines one image's bytes.

What the routes' types cannot check (it depends on the model: latent length, category,
size limit) is checked here, raising ``ApiError`` with the field it is about.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cached_property, lru_cache

import torch

from app.errors import ApiError
from app.inputs import MIN_SIZE, LatentPoint
from app.registry import ServedModel
from model_store import Manifest, seed_to_latent
from model_store.images import provenance


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

    source: str  # "seed-<n>" or "latent-<sha256>": names the latent in cache keys
    class_seed: int  # picks the class when none is asked for, so a seed names one image
    seed: int | None = None  # the seed that draws it, if one does
    given: torch.Tensor | None = None  # [z_dim] float32 on the CPU, when no seed draws it
    z_dim: int = 0

    @cached_property
    def z(self) -> torch.Tensor:
        """[z_dim] float32 on the CPU: the numbers given, or the seed's draw."""
        return self.given if self.given is not None else draw(self.seed, self.z_dim)


def draw(seed: int | None, z_dim: int) -> torch.Tensor:
    assert seed is not None, "a latent without numbers is drawn from its seed"
    return seed_to_latent(seed, z_dim)


def seed_latent(m: Manifest, seed: int) -> Latent:
    """A seed's latent, drawn only when something paints it: a cached image never needs
    it, and the draw (NumPy's PCG64) was a third of a cached pinned request's time."""
    return Latent(f"seed-{seed}", seed, seed, z_dim=m.z_dim)


def point_latent(m: Manifest, point: LatentPoint) -> Latent:
    """The latent of a body's point: its seed's, or the numbers given."""
    if point.seed is not None:
        return seed_latent(m, point.seed)
    assert point.latent is not None  # LatentPoint holds exactly one of them
    return given_latent(m, point.latent)


def given_latent(m: Manifest, values: list[float]) -> Latent:
    if len(values) != m.z_dim:
        raise ApiError(
            422, f"latent: {m.name} takes {m.z_dim} numbers, got {len(values)}", "latent"
        )
    return computed_latent(torch.tensor(values, dtype=torch.float32))


def computed_latent(z: torch.Tensor, class_seed: int | None = None) -> Latent:
    """A latent named by its float32 bytes (given, or computed from others); its class,
    when none is asked for, from ``class_seed`` or else from those bytes."""
    digest = hashlib.sha256(z.numpy().tobytes()).hexdigest()
    default = int(digest[:15], 16) if class_seed is None else class_seed
    return Latent(f"latent-{digest}", default, given=z)


@dataclass(frozen=True)
class ImageSpec:
    """Everything that determines the bytes of one image."""

    model: ServedModel  # resolved once per request: a later default switch does not move it
    latent: torch.Tensor | None  # None: drawn from ``seed`` when painted (``z``)
    source: str
    label: int | None
    psi: float
    size: int
    seed: int | None = None

    @property
    def z(self) -> torch.Tensor:
        """The latent to paint."""
        if self.latent is not None:
            return self.latent
        return draw(self.seed, self.model.manifest.z_dim)

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
        return weak_etag(self.cache_key)

    @property
    def text(self) -> dict[str, str]:
        """PNG text chunks: where the image came from, and the credit its data asks for."""
        seed = None if self.seed is None else str(self.seed)
        return provenance(self.model.manifest, seed, self.category_slug, self.psi)

    @property
    def category_slug(self) -> str | None:
        return self.model.manifest.class_slug(self.label)


@lru_cache(maxsize=4096)  # the same keys come back (cached seeds): a hash each time cost 2%
def weak_etag(cache_key: str) -> str:
    """An ETag that names a picture by its cache key (weak: see ``ImageSpec.etag``)."""
    return 'W/"' + hashlib.sha256(cache_key.encode()).hexdigest()[:32] + '"'


class Specs:
    """Builds ``ImageSpec``s under the service's limits (settings)."""

    def __init__(self, max_size: int) -> None:
        self.max_size = max_size

    def image(self, served: ServedModel, options: ImageOptions, latent: Latent) -> ImageSpec:
        m = served.manifest
        return ImageSpec(
            model=served,
            latent=latent.given,
            source=latent.source,
            label=class_label(m, options.category, latent.class_seed),
            psi=options.truncation,
            size=output_size(m, options.size, self.max_size),
            seed=latent.seed,
        )


def class_label(m: Manifest, category: str | None, class_seed: int) -> int | None:
    """The class: the one asked for (by its slug), else one derived from the seed (or
    latent), so a seed names one image even on a conditional model."""
    try:
        return m.label_for(category, class_seed)
    except ValueError as exc:
        raise ApiError(422, f"category: {exc}", "category") from None


def output_size(m: Manifest, size: int | None, max_size: int) -> int:
    if size is None:
        return m.resolution
    if not MIN_SIZE <= size <= max_size:
        raise ApiError(422, f"size: must be {MIN_SIZE} .. {max_size} pixels", "size")
    return size
