"""Which precision a network computes in: one rule for training and serving.

``amp`` is ``"none"`` (fp32), ``"bf16"`` (bf16 autocast wherever asked, emulated if need
be) or ``"auto"``: bf16 autocast where the device computes bf16 natively, else fp32.
Never fp16: it needs loss scaling in training (two GradScalers for a GAN are easy to get
wrong), and on the devices we use bf16 is as fast.
"""

from __future__ import annotations

import contextlib

import torch

AMP_CHOICES = ("auto", "bf16", "none")


def autocast_dtype(amp: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for ``amp`` on ``device``; None means plain fp32 (no autocast)."""
    if amp not in AMP_CHOICES:
        raise ValueError(f"amp must be one of {', '.join(AMP_CHOICES)}, got {amp!r}")
    if amp == "none":
        return None
    if amp == "bf16":
        return torch.bfloat16
    native = {"cuda": cuda_has_native_bf16, "cpu": cpu_has_native_bf16}.get(device.type)
    return torch.bfloat16 if native is not None and native(device) else None


def cuda_has_native_bf16(device: torch.device) -> bool:
    """Ampere (compute capability 8) and later, and ROCm. Older GPUs only emulate bf16,
    which ``torch.cuda.is_bf16_supported()`` counts as support unless told not to."""
    if torch.version.hip:
        return True
    return torch.cuda.get_device_capability(device)[0] >= 8


def cpu_has_native_bf16(device: torch.device | None = None) -> bool:
    """AVX512-BF16 or AMX. oneDNN also runs bf16 on plain AVX512 by converting
    (``torch.ops.mkldnn._is_mkldnn_bf16_supported()`` says yes there), which measured
    slower than fp32; only the native instructions gave a speed-up."""
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(torch.cpu, name, lambda: False)() for name in checks)


def autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    """``torch.autocast`` to ``dtype`` on ``device``, or nothing for fp32."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


def precision_name(dtype: torch.dtype | None) -> str:
    """ "fp32" or "bf16": the name used in cache keys and logs."""
    return "fp32" if dtype is None else {torch.bfloat16: "bf16"}.get(dtype, str(dtype))
