"""scripts/gpu-train, the one command a GPU machine runs, on the CPU for a few steps (so it
cannot break unseen between the rare GPU runs), and bringing its result home."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from model_store import ModelStore
from tests.training.test_train import tiny_args, tiny_config
from training.cli import main
from training.transfer import SUMS

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "gpu-train"


@pytest.mark.slow
def test_gpu_train_on_the_cpu_sends_back_at_most_8_checked_files_that_import(
    shapes_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    command = [str(SCRIPT), "--device", "cpu", "--data", str(shapes_file), "--out", str(out)]
    command += ["--minutes", "5", "--steps", "4", "--batch-size", "8", "--no-compile"]
    command += ["--bench-sizes", "4", "--bench-steps", "2", "--part-mib", "0.025"]
    command += ["--", *tiny_args("sngan"), "--threads", "1"]
    env = {k: v for k, v in os.environ.items() if k != "OUT"} | {"OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    files = sorted(p.name for p in out.iterdir())
    assert len(files) <= 8 and all((out / f).stat().st_size <= 16 * 2**20 for f in files)
    parts = [f for f in files if f.startswith("model.tar.part-")]
    assert len(parts) >= 2, files  # split at 0.025 MiB, as a big model is at 15 MiB
    assert "samples.png" not in files  # folded away to keep to 8 files (it is in the model)
    log = (out / "gpu-train.log").read_text()
    assert "done (status 0)" in log
    bench = (out / "throughput.md").read_text() if "throughput.md" in files else log
    assert "| sngan | dcgan G / projection D |" in bench
    checks = json.loads((out / "checks.json").read_text())
    assert checks["moved_run"]["continues"] and checks["device"]["device"].startswith("cpu")
    trained = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert trained[-1]["step"] == 4

    store = tmp_path / "store"
    assert main(["import-model", str(out), "--store", str(store), "--name", "shapes"]) == 0
    loaded = ModelStore(store).load("shapes")
    assert loaded.manifest.version == 1 and loaded.manifest.training.steps == 4
    assert "scripts/gpu-train" in loaded.manifest.description
    assert (loaded.path / "samples.png").is_file() and (loaded.path / "training.md").is_file()

    damaged = out / parts[0]
    damaged.write_bytes(damaged.read_bytes()[:-1] + b"?")
    capsys.readouterr()
    assert main(["import-model", str(out), "--store", str(store)]) == 1
    assert "damaged on the way" in capsys.readouterr().err
    assert ModelStore(store).versions("shapes") == [1]
    assert (out / SUMS).is_file()


def test_agreement_check_finds_two_eager_steps_from_one_state_identical(
    shapes_file: Path, tmp_path: Path
) -> None:
    """The compiled side needs a GPU run (CI never compiles): here both sides are eager,
    so the check itself is what is tested: same state in, same step out, noise measured."""
    from training.data import load_dataset
    from training.preflight import compiled_vs_eager

    cfg = tiny_config("sngan", shapes_file, tmp_path / "run", amp="bf16")
    result = compiled_vs_eager(cfg, load_dataset(shapes_file), compiled=cfg)
    assert result["agree"] and result["difference"] == {"loss": 0.0, "image": 0.0}
    assert result["precision_noise"]["loss"] > 0  # bf16 differs from fp32
    assert result["losses_eager"] == result["losses_compiled"]


def test_a_small_model_travels_as_one_archive_and_keeps_its_record(tmp_path: Path) -> None:
    from model_store import TrainingInfo, build_generator
    from training.transfer import ARCHIVE, import_model, pack_version

    there, here = ModelStore(tmp_path / "there"), ModelStore(tmp_path / "here")
    generator = build_generator("dcgan", {"ngf": 8, "resolution": 16, "z_dim": 8}).eval()
    training = TrainingInfo(steps=7, device="NVIDIA H100 80GB HBM3", command="gpu-train")
    there.save(generator, name="emoji", training=training, metrics={"fd": 1.0})
    here.save(generator, name="emoji")  # version 1 exists here already
    written = pack_version(there.resolve("emoji"), tmp_path / "out")
    assert sorted(p.name for p in written) == sorted([ARCHIVE, SUMS])
    manifest = import_model(tmp_path / "out", here)
    assert (manifest.name, manifest.version) == ("emoji", 2)
    assert manifest.training.device == "NVIDIA H100 80GB HBM3"
    assert manifest.metrics == {"fd": 1.0} and manifest.training.steps == 7
    assert manifest.weights_sha256 == there.manifest("emoji").weights_sha256
