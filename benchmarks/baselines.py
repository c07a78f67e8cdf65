"""The serving suite's baselines (benchmarks/suite.py), each with the service's own server
settings (HTTP parser, process count, torch threads), so a ratio measures the service:

- ``naive``: what one would write instead: a FastAPI route that paints one image per
  request (batch 1, the same model, precision and PNG level) in FastAPI's thread pool;
- ``static``: the ceiling: a route that returns the same PNG bytes from a constant.

    DNE_BASELINE=naive python benchmarks/baselines.py --port 8001 --workers 1 --http h11
"""

from __future__ import annotations

import argparse
import os
import secrets
from collections.abc import Sequence
from pathlib import Path

import torch
from fastapi import FastAPI, Response

from app.settings import Settings, get_settings
from model_store import Manifest, ModelStore, autocast_dtype, seeds_to_latents
from model_store.images import encode_png
from model_store.networks import Generator
from model_store.paint import paint

MODE = os.environ.get("DNE_BASELINE", "")  # naive or static; unset: imported for its loader
app = FastAPI()


def default_generator(settings: Settings) -> tuple[Generator, Manifest, torch.dtype | None]:
    """The service's default model as the service runs it (device, threads, channels-last
    memory, precision): for servers that stand beside the service in a benchmark."""
    if settings.threads:
        torch.set_num_threads(settings.threads)
    loaded = ModelStore(settings.model_store).load(
        settings.model, settings.model_version, settings.torch_device()
    )
    generator = loaded.generator.to(memory_format=torch.channels_last)
    return generator, loaded.manifest, autocast_dtype(settings.amp, loaded.device)


def seed_rows(m: Manifest, seeds: Sequence[int]) -> tuple[torch.Tensor, list[int | None]]:
    """[n, z_dim] latents and the classes of ``seeds``, as the service draws them (a seed
    names its class on a conditional model)."""
    return seeds_to_latents(list(seeds), m.z_dim), [m.label_for(None, s) for s in seeds]


if MODE == "naive":
    settings = get_settings()
    generator, m, dtype = default_generator(settings)

    @app.get("/random")
    def random_image() -> Response:
        seed = secrets.randbelow(2**53)
        z, labels = seed_rows(m, [seed])
        pixels = paint(generator, m, z, labels, [1.0], [m.resolution], dtype)[0]
        data = encode_png(pixels, settings.png_compress_level)
        return Response(data, media_type="image/png", headers={"X-Seed": str(seed)})

elif MODE == "static":
    DATA = Path(os.environ["DNE_STATIC_FILE"]).read_bytes()

    @app.get("/{path:path}")
    async def constant(path: str) -> Response:
        return Response(DATA, media_type="image/png")


def main() -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--http", default="h11")
    args = parser.parse_args()
    uvicorn.run(
        "baselines:app",
        host="127.0.0.1",
        port=args.port,
        workers=args.workers,
        http=args.http,
        access_log=False,
        log_level="warning",
        server_header=False,
    )


if __name__ == "__main__":
    main()
