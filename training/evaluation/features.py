"""Train the evaluation feature network: a small classifier of the data set's categories.

``python -m training train-features --data data/emoji.dne.gz --name emoji-features`` trains
``model_store.networks.features.FeatureNet`` on the categories, holds out whole designs
(an emoji's Google and Twitter drawings go to the same side) to measure its accuracy, and
stores the frozen network in the model store as ``kind="feature_extractor"``. FD, KID and
precision/recall computed with it are named after it: "FD (emoji-features v1)".
"""

from __future__ import annotations

import shlex
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from model_store import Manifest, ModelStore, TrainingInfo, sha256_file
from model_store.networks.features import FeatureNet, FeatureNetConfig
from training.data import ImageDataset


def design_groups(ds: ImageDataset) -> np.ndarray:
    """A group id per image: its name without the ``source/`` prefix (or the image itself)."""
    if not ds.names:
        return np.arange(len(ds))
    keys = [name.split("/", 1)[-1] for name in ds.names]
    _, groups = np.unique(np.array(keys), return_inverse=True)
    return groups


def held_out_split(ds: ImageDataset, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train, held-out) indices; every design lands wholly on one side."""
    groups = design_groups(ds)
    unique = np.unique(groups)
    rng = np.random.default_rng(seed)
    chosen = rng.choice(unique, size=max(1, round(len(unique) * fraction)), replace=False)
    test = np.isin(groups, chosen)
    return np.flatnonzero(~test), np.flatnonzero(test)


def augment(
    x: torch.Tensor, gen: torch.Generator, shift: int = 4, flip: bool = True
) -> torch.Tensor:
    """Random translation by up to ``shift`` pixels (padding with -1: transparent / black)
    and horizontal flips: a category does not change when an emoji moves or mirrors (a
    digit does: use ``flip=False`` for MNIST)."""
    n, _, h, w = x.shape
    padded = F.pad(x, (shift, shift, shift, shift), value=-1.0)
    dy, dx = torch.randint(0, 2 * shift + 1, (2,), generator=gen).tolist()
    out = padded[:, :, dy : dy + h, dx : dx + w]
    if not flip:
        return out
    mirror = torch.rand(n, generator=gen) < 0.5
    return torch.where(mirror[:, None, None, None], out.flip(3), out)


@torch.no_grad()
def accuracy(net: FeatureNet, x: torch.Tensor, y: torch.Tensor, batch_size: int = 256) -> float:
    net.eval()
    correct = sum(
        int((net(x[i : i + batch_size]).argmax(1) == y[i : i + batch_size]).sum())
        for i in range(0, len(x), batch_size)
    )
    return correct / max(len(x), 1)


def train_feature_net(
    ds: ImageDataset,
    *,
    widths: tuple[int, ...] = (32, 64, 128, 256),
    epochs: int = 20,
    batch_size: int = 64,
    lr: float = 2e-3,
    held_out: float = 0.1,
    seed: int = 0,
    flip: bool = True,
    progress: bool = True,
) -> tuple[FeatureNet, dict[str, Any]]:
    """Train on the data's classes; returns the eval-mode network and its figures."""
    if len(ds.class_names) < 2:
        raise ValueError("the feature network learns the data's classes: it needs at least 2")
    train_idx, test_idx = held_out_split(ds, held_out, seed)
    x = ds.to_float(premultiply=ds.channels == 4)  # [N, C, R, R] in [-1, 1]: generator space
    y = ds.labels
    torch.manual_seed(seed)
    config = FeatureNetConfig(
        channels=ds.channels,
        resolution=ds.resolution,
        num_classes=len(ds.class_names),
        widths=tuple(widths),
    )
    net = FeatureNet(config)
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=5e-4)
    steps = epochs * -(-len(train_idx) // batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps)
    gen = torch.Generator().manual_seed(seed)
    xt, yt = x[train_idx], y[train_idx]
    started = time.perf_counter()
    bar = tqdm(total=steps, disable=not progress, unit="step", dynamic_ncols=True)
    for _ in range(epochs):
        net.train()
        order = torch.randperm(len(xt), generator=gen)
        for start in range(0, len(xt), batch_size):
            idx = order[start : start + batch_size]
            logits = net(augment(xt[idx], gen, flip=flip))
            loss = F.cross_entropy(logits, yt[idx], label_smoothing=0.1)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            bar.update(1)
            bar.set_postfix(loss=f"{loss.detach().item():.3f}")
    bar.close()
    net.eval().requires_grad_(False)
    figures = {
        "train_accuracy": round(accuracy(net, xt, yt), 4),
        "held_out_accuracy": round(accuracy(net, x[test_idx], y[test_idx]), 4),
        "held_out_images": len(test_idx),
        "train_images": len(train_idx),
        "epochs": epochs,
        "steps": steps,
        "wall_time_s": round(time.perf_counter() - started, 1),
    }
    return net, figures


def store_feature_net(
    store: ModelStore,
    name: str,
    ds: ImageDataset,
    data: Path,
    net: FeatureNet,
    figures: dict[str, Any],
    recipe: dict[str, Any],
) -> Manifest:
    """Store the frozen network as ``kind="feature_extractor"`` with its training record.

    ``recipe`` holds the options it was trained with (epochs, batch_size, lr, ...)."""
    training = TrainingInfo(
        dataset=ds.describe(),
        dataset_sha256=sha256_file(data),
        num_images=len(ds),
        steps=figures["steps"],
        images_seen=figures["steps"] * recipe["batch_size"],
        wall_time_s=figures["wall_time_s"],
        device=f"cpu ({torch.get_num_threads()} threads)",
        command="python -m training " + shlex.join(sys.argv[1:]),
        recipe=recipe,
    )
    return store.save_feature_extractor(
        net,
        name=name,
        description=f"Frozen {len(ds.class_names)}-category classifier of {ds.describe()}; "
        f"evaluation features are its {net.config.feature_dim}-d pooled last conv stage.",
        alpha="premultiplied" if ds.channels == 4 else "none",
        class_names=list(ds.class_names),
        class_slugs=list(ds.class_slugs),
        training=training,
        credits=ds.credits(),
        metrics=figures,
    )
