"""The engine alone: no asyncio, no HTTP; rows of one batch keep their own options."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from app.engine import Engine, ImageRequest
from model_store import LoadedModel, ModelStore, seed_to_latent


@pytest.fixture(scope="module")
def engine(store_root: Path) -> Engine:
    return Engine(ModelStore(store_root).load("emoji"))


def request(seed: int, label: int = 0, psi: float = 1.0, size: int = 16) -> ImageRequest:
    return ImageRequest(seed_to_latent(seed, 16), label, psi, size)


def test_one_batch_mixes_classes_truncations_and_sizes(engine: Engine) -> None:
    rows = [request(1, 0), request(2, 2, 0.5), request(3, 1, size=40), request(4, size=8)]
    batched = engine.run(rows)
    assert [image.shape for image in batched] == [(16, 16, 4), (16, 16, 4), (40, 40, 4), (8, 8, 4)]
    assert all(image.dtype == np.uint8 for image in batched)
    for row, image in zip(rows, batched, strict=True):
        alone = engine.run([row])[0]
        assert np.abs(image.astype(int) - alone).max() <= 1


def test_class_and_truncation_change_the_image(engine: Engine) -> None:
    base, other_class, truncated = engine.run([request(5, 0), request(5, 1), request(5, 0, 0.3)])
    assert not np.array_equal(base, other_class) and not np.array_equal(base, truncated)


def test_warm_up_runs_the_batch_sizes_asked_for(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    batches: list[tuple[int, list[tuple[int, ...]]]] = []
    run = engine.run

    def recording_run(requests: list[ImageRequest]) -> list[np.ndarray]:
        images = run(requests)
        batches.append((len(requests), [image.shape for image in images]))
        return images

    monkeypatch.setattr(engine, "run", recording_run)
    engine.warm_up((1, 3))
    # Each size once, at the model's own resolution (what traffic asks by default).
    assert batches == [(1, [(16, 16, 4)]), (3, [(16, 16, 4)] * 3)]


def test_fp32_is_the_default_and_on_a_faked_gpu_turns_tf32_off(store_root: Path) -> None:
    loaded = ModelStore(store_root).load("emoji")
    assert Engine(loaded).dtype is None  # even where this CPU has native bf16
    # No GPU here: the engine is only told its model is on one (nothing runs on it).
    on_gpu = LoadedModel(loaded.manifest, loaded.generator, torch.device("cuda"), loaded.path)
    cudnn, cublas = torch.backends.cudnn, torch.backends.cuda.matmul
    saved = cudnn.allow_tf32, cublas.allow_tf32
    try:
        cudnn.allow_tf32 = cublas.allow_tf32 = True
        Engine(on_gpu, amp="bf16")
        assert cudnn.allow_tf32  # bf16 asked for: TF32 is no worse, left as it was
        Engine(on_gpu)
        assert not cudnn.allow_tf32 and not cublas.allow_tf32
    finally:
        cudnn.allow_tf32, cublas.allow_tf32 = saved


class FakeOutOfMemory(torch.nn.Module):
    """Wraps a generator and raises torch.OutOfMemoryError for batches over ``fits``, as
    CUDA does when a batch's activations do not fit. A fake: no GPU runs the tests."""

    def __init__(self, generator: torch.nn.Module, fits: int) -> None:
        super().__init__()
        self.generator, self.fits, self.batches = generator, fits, []

    def forward(self, z: torch.Tensor, *args: object) -> torch.Tensor:
        self.batches.append(len(z))
        if len(z) > self.fits:
            raise torch.OutOfMemoryError("CUDA out of memory (fake, injected by the test)")
        return self.generator(z, *args)


def test_fake_cuda_oom_splits_the_batch_and_retries(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    rows = [request(seed, seed % 3) for seed in range(10)]
    expected = engine.run(rows)
    fake = FakeOutOfMemory(engine.generator, fits=3)
    monkeypatch.setattr(engine, "generator", fake)
    images = engine.run(rows)
    assert fake.batches == [10, 5, 2, 3, 5, 2, 3]  # halves until each part fits
    for image, before in zip(images, expected, strict=True):
        assert np.abs(image.astype(int) - before).max() <= 1


def test_fake_cuda_oom_on_a_single_row_fails_that_batch(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(engine, "generator", FakeOutOfMemory(engine.generator, fits=0))
    with pytest.raises(torch.OutOfMemoryError):
        engine.run([request(1), request(2)])
