"""The manifest: everything a loader, a server or a reader needs to know about a stored model."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from model_store.networks.base import TruncationMode

MANIFEST_SCHEMA = 1


class TrainingInfo(BaseModel):
    """How and where the weights were trained (for people reading the manifest)."""

    model_config = ConfigDict(extra="allow")

    dataset: str = ""  # e.g. "emoji-datasource-google+twitter 16.0.0, 64x64 RGBA"
    dataset_sha256: str = ""
    num_images: int = 0
    steps: int = 0
    images_seen: int = 0
    wall_time_s: float = 0.0
    device: str = ""  # e.g. "NVIDIA H100 80GB HBM3" or "cpu (2 cores)"
    throughput_img_s: float = 0.0
    command: str = ""  # the exact command that trained it
    recipe: dict[str, Any] = Field(default_factory=dict)  # losses, augmentation, lr, ...


class Manifest(BaseModel):
    """``manifest.json`` beside ``generator.safetensors`` (or ``features.safetensors``)."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    schema_version: int = MANIFEST_SCHEMA
    kind: Literal["generator", "feature_extractor"] = "generator"
    name: str
    version: int = Field(ge=1)
    description: str = ""
    # What the page says (empty: derived from the name): its headline, and what one
    # image shows, e.g. "This Emoji Does Not Exist" and "emoji".
    title: str = ""
    noun: str = ""
    architecture: str
    config: dict[str, Any]  # the architecture's config, as plain JSON values
    z_dim: int = Field(ge=1)
    resolution: int = Field(ge=1)
    channels: Literal[1, 3, 4]
    # "premultiplied": RGB was multiplied by alpha (continuous at edges, so easier to
    # learn); it is divided out again before PNG encoding.
    alpha: Literal["none", "straight", "premultiplied"] = "none"
    class_names: list[str] = Field(default_factory=list)  # empty = unconditional
    class_slugs: list[str] = Field(default_factory=list)  # URL names, same order
    # How psi applies (model_store/networks/base.py); manifests from before the field
    # existed scaled z.
    truncation: TruncationMode = "z_scale"
    weights_file: str = "generator.safetensors"
    weights_sha256: str
    seed0_latent_sha256: str  # catches a NumPy upgrade that changes seed -> latent
    sample_grid: str | None = "samples.png"
    training: TrainingInfo = Field(default_factory=TrainingInfo)
    credits: list[str] = Field(default_factory=list)  # data licences that require credit
    metrics: dict[str, Any] = Field(default_factory=dict)
    created_at: datetime = Field(default_factory=lambda: datetime.now(UTC))

    @property
    def conditional(self) -> bool:
        return bool(self.class_names)

    @property
    def display_title(self) -> str:
        return self.title or f"This {self.display_noun.title()} Does Not Exist"

    @property
    def display_noun(self) -> str:
        return self.noun or self.name.replace("-", " ").replace("_", " ")

    @property
    def ref(self) -> str:
        return f"{self.name}/{self.version}"

    def label_for(self, category: str | None, class_seed: int) -> int | None:
        """The class of an image: ``category`` (a slug) if given, else one derived from
        the seed (or latent), so a seed names one image even on a conditional model.
        ValueError for a category the model does not have."""
        if not self.conditional:
            if category is not None:
                raise ValueError(f"{self.name} has no categories")
            return None
        if category is None:
            return class_seed % len(self.class_names)
        if category not in self.class_slugs:
            raise ValueError(f"not one of {self.name}'s: {', '.join(self.class_slugs)}")
        return self.class_slugs.index(category)

    def class_slug(self, label: int | None) -> str | None:
        """The slug of class ``label`` (None for no class, or a model without slugs)."""
        return self.class_slugs[label] if label is not None and self.class_slugs else None

    def class_index(self, category: str) -> int:
        """The class for a slug or display name (case-insensitive); KeyError if unknown."""
        wanted = category.strip().lower()
        for i, (name, slug) in enumerate(zip(self.class_names, self.class_slugs, strict=False)):
            if wanted in (name.lower(), slug.lower()):
                return i
        if wanted.isdigit() and int(wanted) < len(self.class_names):
            return int(wanted)
        raise KeyError(category)
