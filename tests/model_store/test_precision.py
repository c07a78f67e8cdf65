"""One autocast rule for training and serving, explicit about the CPU and CUDA."""

from __future__ import annotations

import pytest
import torch

from model_store import autocast_dtype, precision_name

CPU, CUDA = torch.device("cpu"), torch.device("cuda", 0)


def native_cpu(monkeypatch: pytest.MonkeyPatch, avx512_bf16: bool, amx: bool) -> None:
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx)


@pytest.mark.parametrize(("avx512_bf16", "amx"), [(True, False), (False, True), (True, True)])
def test_auto_is_bf16_on_a_cpu_with_native_bf16(monkeypatch, avx512_bf16, amx) -> None:
    native_cpu(monkeypatch, avx512_bf16, amx)
    assert autocast_dtype("auto", CPU) == torch.bfloat16


def test_auto_is_fp32_on_a_cpu_that_would_only_emulate_bf16(monkeypatch) -> None:
    # Plain AVX512: oneDNN says it can do bf16 (by converting), which measured slower.
    native_cpu(monkeypatch, False, False)
    assert autocast_dtype("auto", CPU) is None


@pytest.mark.parametrize(("capability", "dtype"), [((7, 5), None), ((8, 0), torch.bfloat16)])
def test_auto_on_a_faked_gpu_is_bf16_from_ampere_on(monkeypatch, capability, dtype) -> None:
    # No GPU here: the capability query is faked. A Turing card only emulates bf16, and
    # fp16 is never chosen.
    monkeypatch.setattr(torch.version, "hip", None)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    assert autocast_dtype("auto", CUDA) == dtype


def test_explicit_choices_hold_everywhere_and_others_are_refused() -> None:
    for device in (CPU, CUDA):
        assert autocast_dtype("none", device) is None
        assert autocast_dtype("bf16", device) == torch.bfloat16
    with pytest.raises(ValueError, match="auto, bf16, none"):
        autocast_dtype("fp16", CPU)
    assert (precision_name(None), precision_name(torch.bfloat16)) == ("fp32", "bf16")
