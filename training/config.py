"""The training run's configuration: one frozen dataclass and the presets.

Every field becomes a ``train`` option (``training.cli``) whose help is the field's ``help``
metadata. Precedence: dataclass defaults < ``--preset`` < options given on the command line.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from model_store import AMP_CHOICES, ARCHITECTURES
from training.augment import AUGMENTATIONS, parse_policy
from training.data.dataset import SKIN_TONE_MODES
from training.discriminators import DISCRIMINATORS
from training.losses import LOSSES


class ConfigError(ValueError):
    """Options that do not make a run (or do not match the run being resumed)."""


def opt(default: Any, help: str, **kw: Any) -> Any:
    """A dataclass field with its command-line help and, optionally, ``choices``, a
    ``minimum``, or ``required`` (the command line must give it)."""
    return field(default=default, metadata={"help": help, **kw})


COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


@dataclass(frozen=True)
class TrainConfig:
    data: str = opt("", "data-set file (from build-emoji or build-folder)", required=True)
    run_dir: str = opt(
        "", "run directory: config, checkpoints, samples and logs go here", required=True
    )
    # Networks
    arch: str = opt("dcgan", "generator architecture", choices=tuple(ARCHITECTURES))
    g_config: str = opt("{}", "generator config overrides as JSON, e.g. '{\"ngf\": 64}'")
    d_arch: str = opt("projection", "discriminator", choices=tuple(DISCRIMINATORS))
    d_config: str = opt("{}", "discriminator config overrides as JSON, e.g. '{\"width\": 64}'")
    z_dim: int = opt(128, "latent size", minimum=1)
    conditional: bool = opt(True, "condition on the data set's classes (if it has several)")
    # Objective and optimisation
    loss: str = opt("hinge", "ns (the seed paper's, with -log D(G(z))) or hinge", choices=LOSSES)
    d_steps: int = opt(1, "discriminator steps per generator step (k in Algorithm 1)", minimum=1)
    optimizer: str = opt("adam", "sgd uses momentum (beta1)", choices=("adam", "sgd"))
    lr_g: float = opt(2e-4, "generator learning rate", minimum=0)
    lr_d: float = opt(2e-4, "discriminator learning rate", minimum=0)
    beta1: float = opt(0.5, "Adam beta1 (or SGD momentum)", minimum=0)
    beta2: float = opt(0.999, "Adam beta2", minimum=0)
    lr_decay: float = opt(1.0, "multiply both learning rates by this every step (1 = off)")
    r1_gamma: float = opt(0.0, "R1 penalty weight on real images (0 = off)", minimum=0)
    augment: str = opt(
        "color,translation,cutout", f"DiffAugment policy from {', '.join(AUGMENTATIONS)} ('' = off)"
    )
    ema_kimg: float = opt(
        10.0, "EMA half-life of the generator in thousands of images (0 = off)", minimum=0
    )
    ema_rampup: float = opt(
        0.05, "EMA half-life at most this fraction of images seen (0 = off)", minimum=0
    )
    # Data
    batch_size: int = opt(64, "images per step (per process when distributed)", minimum=1)
    skin_tones: str = opt(
        "drop", "emoji skin-tone variants: base designs only, or all", choices=SKIN_TONE_MODES
    )
    balance: bool = opt(False, "sample classes equally instead of by their share of the data")
    # Length and outputs
    steps: int = opt(
        10_000, "generator steps to train in all (a resumed run continues to it)", minimum=0
    )
    max_minutes: float = opt(
        0.0, "stop (with a checkpoint) after this many minutes (0 = off)", minimum=0
    )
    sample_every: int = opt(500, "write a sample grid every N steps", minimum=1)
    checkpoint_every: int = opt(1000, "write a checkpoint every N steps", minimum=1)
    keep_checkpoints: int = opt(3, "how many recent checkpoints to keep", minimum=1)
    log_every: int = opt(50, "append losses and timings to log.jsonl every N steps", minimum=1)
    grid: int = opt(8, "sample grid edge (grid x grid images from fixed seeds)", minimum=1)
    # Machine
    device: str = opt("auto", "auto (cuda if available, else cpu), cpu or cuda[:n]")
    amp: str = opt(
        "auto",
        "autocast: auto (bf16 where the device has it natively), bf16 or none (fp32)",
        choices=AMP_CHOICES,
    )
    channels_last: bool = opt(True, "use channels_last memory format")
    compile: bool = opt(False, "torch.compile the networks (CUDA; no gain measured on CPU)")
    compile_mode: str = opt(
        "default", "torch.compile mode (reduce-overhead: CUDA graphs)", choices=COMPILE_MODES
    )
    threads: int = opt(0, "CPU threads for torch (0 = torch's default)", minimum=0)
    seed: int = opt(0, "seed for weights, data order, latents and augmentation", minimum=0)
    deterministic: bool = opt(False, "deterministic algorithms (bitwise-reproducible on CPU)")
    progress: bool = opt(True, "show a progress bar")

    def __post_init__(self) -> None:
        for f in fields(self):
            value, meta = getattr(self, f.name), f.metadata
            flag = "--" + f.name.replace("_", "-")
            if "choices" in meta and value not in meta["choices"]:
                known = ", ".join(meta["choices"])
                raise ConfigError(f"{flag} must be one of {known}, got {value!r}")
            if "minimum" in meta and value < meta["minimum"]:
                raise ConfigError(f"{flag} must be at least {meta['minimum']}, got {value!r}")
        for flag, text in (("--g-config", self.g_config), ("--d-config", self.d_config)):
            try:
                overrides = json.loads(text)
            except json.JSONDecodeError as exc:
                raise ConfigError(f"{flag} is not JSON ({exc}): {text!r}") from None
            if not isinstance(overrides, dict):
                raise ConfigError(f"{flag} must be a JSON object, got {text!r}")
        try:
            parse_policy(self.augment)
        except ValueError as exc:
            raise ConfigError(f"--augment: {exc}") from None

    def generator_overrides(self) -> dict[str, Any]:
        return json.loads(self.g_config)

    def discriminator_overrides(self) -> dict[str, Any]:
        return json.loads(self.d_config)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# Recipes people ask for by name. Explicit options still win.
PRESETS: dict[str, dict[str, Any]] = {
    # Goodfellow et al. 2014: MLP generator, maxout discriminator with dropout, the
    # non-saturating loss; no augmentation or EMA (the paper had neither). The paper's SGD
    # (lr 0.1, momentum) relied on pylearn2's max-norm constraints: without them it went to
    # NaN within 100 steps on MNIST here, so the preset uses Adam as the MNIST table did.
    "goodfellow": dict(
        arch="mlp",
        d_arch="maxout",
        loss="ns",
        z_dim=100,
        optimizer="adam",
        lr_g=2e-4,
        lr_d=2e-4,
        beta1=0.5,
        augment="",
        ema_kimg=0.0,
        channels_last=False,
        batch_size=100,
        conditional=False,
    ),
    # Radford et al. 2015 as published: BN discriminator, BCE (ns) loss, Adam(2e-4, 0.5).
    "dcgan": dict(
        arch="dcgan",
        d_arch="dcgan",
        loss="ns",
        z_dim=100,
        augment="",
        ema_kimg=0.0,
        g_config='{"ngf": 64}',
        d_config='{"width": 64}',
    ),
    # The CPU default for emoji: DCGAN-shaped nets with the modern recipe (spectral-norm
    # projection discriminator, hinge loss, DiffAugment, EMA), cheap enough for 2 cores.
    "sngan": dict(
        arch="dcgan", g_config='{"conditioning": "cbn"}', d_arch="projection", loss="hinge"
    ),
    # The GPU candidate: ResNet G with conditional BN, ResNet D with spectral norm.
    "resnet": dict(
        arch="resnet",
        d_arch="resnet",
        loss="hinge",
        beta1=0.0,
        beta2=0.999,
        lr_g=1e-4,
        lr_d=4e-4,
        g_config='{"ch": 32}',
        d_config='{"width": 64}',
    ),
}


def resolve_config(preset: str | None, given: dict[str, Any]) -> TrainConfig:
    """Dataclass defaults, then the preset's values, then ``given`` (explicit options)."""
    values: dict[str, Any] = dict(PRESETS[preset]) if preset else {}
    values |= {k: v for k, v in given.items() if v is not None}
    return replace(TrainConfig(), **values)
