"""What fp32 costs against bf16 autocast, and how far apart their pixels are.

    python benchmarks/bench_precision.py --out benchmarks/precision.md

Why it exists: a pinned link (``/models/{name}/{version}/seed/{seed}``) is served as
immutable, so every replica must paint it alike. bf16 autocast is used only where a host
computes it natively, so a mixed fleet would paint one URL in two precisions. This script
measures both sides of that decision on the machine it runs on:

1. pixels: the same seeds (emoji v1, 256 seeds) in fp32 at batch 64 against fp32 at
   batch 1, bf16, and fp32 in a subprocess limited to older instruction sets (AVX2;
   SSE4.1), standing for replicas on other CPUs;
2. speed: ``Engine.run`` (forward pass + uint8, as the service runs it) in img/s per
   batch size, fp32 and bf16 interleaved round by round;
3. with ``--http-seconds N``: ``GET /random`` end to end at 32 connections with
   ``DNE_AMP=none`` and ``DNE_AMP=bf16`` (the real service, wrk; see bench_random.py).
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_random import cpu_model

from app.engine import Engine, ImageRequest
from model_store import DEFAULT_ROOT, ModelStore, seed_to_latent

SEEDS = range(256)
OTHER_CPUS = {  # oneDNN and ATen kernels limited to an older instruction set
    "AVX2": {"DNNL_MAX_CPU_ISA": "AVX2", "ATEN_CPU_CAPABILITY": "avx2"},
    "SSE4.1": {"DNNL_MAX_CPU_ISA": "SSE41", "ATEN_CPU_CAPABILITY": "default"},
}


def requests(engine: Engine, seeds: range) -> list[ImageRequest]:
    m = engine.manifest
    return [
        ImageRequest(seed_to_latent(s, m.z_dim), m.label_for(None, s), 1.0, m.resolution)
        for s in seeds
    ]


def paint(engine: Engine, seeds: range, batch: int = 64) -> np.ndarray:
    rows = requests(engine, seeds)
    images = [i for at in range(0, len(rows), batch) for i in engine.run(rows[at : at + batch])]
    return np.stack(images).astype(np.int16)


def differences(a: np.ndarray, b: np.ndarray) -> dict[str, float]:
    """Per channel; for RGBA also alpha alone and colour weighted by alpha (what shows)."""
    raw = np.abs(a - b)
    out = {"max": int(raw.max()), "share of channels > 1": float((raw > 1).mean())}
    if a.shape[-1] == 4:
        alpha = raw[..., 3]
        shown = np.abs(a[..., :3] * a[..., 3:] - b[..., :3] * b[..., 3:]) / 255
        per_image = np.maximum(alpha, shown.max(-1)).reshape(len(a), -1).max(1)
        out |= {
            "alpha max": int(alpha.max()),
            "alpha-weighted colour max": round(float(shown.max()), 1),
            "images with a visible change (> 8 levels)": int((per_image > 8).sum()),
        }
    return out


def other_cpu_pixels(store: Path, model: str, env: dict[str, str]) -> np.ndarray:
    """fp32 pixels painted in a subprocess whose kernels use an older instruction set."""
    code = (
        "import sys, numpy as np; sys.path.insert(0, sys.argv[1]); "
        "from bench_precision import engine_for, paint, SEEDS; "
        "np.save(sys.stdout.buffer, paint(engine_for(sys.argv[2], sys.argv[3], 'none'), SEEDS))"
    )
    here = str(Path(__file__).resolve().parent)
    out = subprocess.run(
        [sys.executable, "-c", code, here, str(store), model],
        env={**os.environ, **env},
        capture_output=True,
        check=True,
    ).stdout
    return np.load(io.BytesIO(out))


def engine_for(store: str | Path, model: str, amp: str) -> Engine:
    return Engine(ModelStore(store).load(model), amp)


def speed(engines: dict[str, Engine], batch: int, seconds: float, rounds: int) -> dict:
    """img/s per precision; rounds alternate so both see the same machine load."""
    rows = requests(next(iter(engines.values())), range(batch))
    done = {name: [0, 0.0] for name in engines}
    for _ in range(rounds):
        for name, engine in engines.items():
            engine.run(rows)  # warm this shape
            started = time.perf_counter()
            while time.perf_counter() - started < seconds / rounds:
                engine.run(rows)
                done[name][0] += batch
            done[name][1] += time.perf_counter() - started
    return {name: images / spent for name, (images, spent) in done.items()}


def http(store: Path, seconds: int) -> dict[str, float]:
    from bench_random import measure

    args = argparse.Namespace(store=store, clients=32, seconds=seconds, warmup=3)
    return {
        amp: measure(f"DNE_AMP={amp}", {"DNE_AMP": amp}, args).req_s for amp in ("none", "bf16")
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", type=Path, default=DEFAULT_ROOT)
    parser.add_argument("--model", default="emoji")
    parser.add_argument("--batches", default="1,8,64", help="batch sizes to time")
    parser.add_argument("--seconds", type=float, default=6, help="per batch size and precision")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    parser.add_argument("--http-seconds", type=int, default=0, help="also GET /random (wrk)")
    parser.add_argument("--out", type=Path, help="Markdown file to add the results to")
    parser.add_argument("--note", help="a line for the results: what else ran, and so on")
    args = parser.parse_args()
    load_before = os.getloadavg()[0]
    if args.threads:
        torch.set_num_threads(args.threads)
    engines = {amp: engine_for(args.store, args.model, amp) for amp in ("none", "bf16")}
    fp32 = paint(engines["none"], SEEDS)
    pixels = {
        "fp32, batches of 1 instead of 64": differences(fp32, paint(engines["none"], SEEDS, 1)),
        "bf16 autocast, this CPU": differences(fp32, paint(engines["bf16"], SEEDS)),
    }
    for name, env in OTHER_CPUS.items():
        other = other_cpu_pixels(args.store, args.model, env)
        pixels[f"fp32, kernels limited to {name}"] = differences(fp32, other)
    print(json.dumps(pixels, indent=1), flush=True)
    timings = {}
    for batch in [int(b) for b in args.batches.split(",")]:
        timings[batch] = speed(engines, batch, args.seconds, rounds=3)
        print(f"batch {batch}: {timings[batch]}", flush=True)
    req_s = http(args.store, args.http_seconds) if args.http_seconds else {}
    m = engines["none"].manifest
    native = torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()
    lines = [
        f"### {dt.datetime.now():%Y-%m-%d %H:%M}: {os.cpu_count()} CPUs, {cpu_model()}"
        f" (native bf16: {'yes' if native else 'no'}), torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads",
        "",
        f"Command: `python {shlex.join(sys.argv)}`  ",
        f"Model: {m.ref} ({m.architecture}, {m.resolution}x{m.resolution}, {m.channels} "
        f"channels); pixels over seeds 0..{len(SEEDS) - 1} against fp32 on this CPU.  ",
        f"Load average (1 min) before: {load_before:.2f}, after: {os.getloadavg()[0]:.2f}"
        + (f"  \n{args.note}" if args.note else ""),
        "",
        "| painted with | max | share > 1 | alpha max | alpha-weighted colour max "
        "| images visibly changed (> 8) |",
        "|---|---:|---:|---:|---:|---:|",
        *(
            f"| {name} | {d['max']} | {d['share of channels > 1']:.4%} | {d.get('alpha max', '')}"
            f" | {d.get('alpha-weighted colour max', '')} | "
            f"{d.get('images with a visible change (> 8 levels)', '')} of {len(SEEDS)} |"
            for name, d in pixels.items()
        ),
        "",
        "| batch | fp32 img/s | bf16 img/s | fp32 / bf16 |",
        "|---:|---:|---:|---:|",
        *(
            f"| {b} | {t['none']:.0f} | {t['bf16']:.0f} | {t['none'] / t['bf16']:.2f} |"
            for b, t in timings.items()
        ),
        "",
    ]
    if req_s:
        lines += [
            f"`GET /random`, wrk 32 connections, {args.http_seconds} s each: "
            f"DNE_AMP=none {req_s['none']:.0f} req/s, DNE_AMP=bf16 {req_s['bf16']:.0f} req/s "
            f"(fp32 / bf16: {req_s['none'] / req_s['bf16']:.2f}).",
            "",
        ]
    section = "\n".join(lines)
    print(section)
    if args.out:
        heading = "# Precision: what fp32 costs against bf16, and how far their pixels differ\n\n"
        old = args.out.read_text().removeprefix(heading) if args.out.exists() else ""
        args.out.write_text(heading + section + "\n" + old)
    return 0


if __name__ == "__main__":
    sys.exit(main())
