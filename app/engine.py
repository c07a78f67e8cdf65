"""Latents in, uint8 images out, on one device. Knows nothing about asyncio or HTTP."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch

from model_store import LoadedModel, autocast_dtype, precision_name
from model_store.paint import paint

log = logging.getLogger("app.engine")


@dataclass(frozen=True)
class ImageRequest:
    latent: torch.Tensor  # [z_dim] float32, on the CPU
    label: int | None  # class index (conditional models) or None
    psi: float  # truncation; 1 = off
    size: int  # output edge in pixels


class Engine:
    """Runs a stored generator: ``run`` is the batcher's ``run_batch``."""

    def __init__(self, model: LoadedModel, amp: str = "none") -> None:
        self.model = model
        self.manifest = model.manifest
        self.generator = model.generator
        self.device = model.device
        self.dtype = autocast_dtype(amp, self.device)
        self.precision = precision_name(self.dtype)
        if self.dtype is None and self.device.type == "cuda":
            # fp32 means fp32: cuDNN would run convolutions in TF32 (10-bit mantissa) by
            # default, and pinned links promise the pixels a CPU replica paints.
            torch.backends.cudnn.allow_tf32 = False
            torch.backends.cuda.matmul.allow_tf32 = False
        # Measured on the 2-core Xeon (DCGAN-64 RGBA, img/s at batch 1/8/32/64, cores shared
        # with a training run, so compare rows, not absolutes): fp32 3/16/48/80, fp32 +
        # channels_last 4/20/59/97, bf16 4/47/144/248, bf16 + channels_last 18/95/193/229.
        # Pixels stayed bitwise equal across batch sizes in every mode.
        self.generator = self.generator.to(memory_format=torch.channels_last)

    def run(self, requests: list[ImageRequest]) -> list[np.ndarray]:
        """[H, W, C] uint8 per request: one forward pass for the whole batch, or, when the
        device runs out of memory (a large batch at a large size, another process on the
        GPU), its halves one after the other, down to one row. Only a row that does not
        fit alone fails, and the batcher fails just that batch's requests."""
        try:
            return self._forward(requests)
        except torch.OutOfMemoryError:
            if len(requests) == 1:
                raise
            log.warning("out of memory at batch %d; running it in halves", len(requests))
        # Out here, the failed pass's tensors are gone with its traceback.
        if self.device.type == "cuda":
            torch.cuda.empty_cache()  # their blocks, back to the device for the halves
        half = len(requests) // 2
        return self.run(requests[:half]) + self.run(requests[half:])

    def _forward(self, requests: list[ImageRequest]) -> list[np.ndarray]:
        """One forward pass for the whole batch."""
        return paint(
            self.generator,
            self.manifest,
            torch.stack([r.latent for r in requests]),
            [r.label for r in requests],
            [r.psi for r in requests],
            [r.size for r in requests],
            self.dtype,
        )

    def warm_up(self, batch_sizes: tuple[int, ...] = (1, 8)) -> None:
        """Run the shapes traffic will use, so the first users do not pay for set-up.
        Untruncated rows: truncation's class means are ``fit_truncation``'s job."""
        zeros = torch.zeros(self.manifest.z_dim)
        label = 0 if self.manifest.conditional else None
        for n in batch_sizes:
            self.run([ImageRequest(zeros, label, 1.0, self.manifest.resolution)] * n)

    @property
    def truncation_fitted(self) -> bool:
        """Whether a truncated row (ψ ≠ 1) can be painted without computing anything first."""
        g = self.generator
        return g.truncation_mode != "feature_avg" or g.stem_means is not None

    def fit_truncation(self) -> None:
        """The class feature means ``feature_avg`` truncation pulls towards: a fixed draw
        through the stem (model_store/networks/base.py), seconds on a loaded CPU, so the
        service computes them after warm-up, beside untruncated traffic."""
        if not self.truncation_fitted:
            self.generator.fit_stem_means()
