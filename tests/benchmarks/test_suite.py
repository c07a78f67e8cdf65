"""A short run of the serving suite (benchmarks/suite.py) on the tests' tiny model: every
server starts, every scenario is measured, the table and the JSON are written. The full
run is not part of CI: it takes the machine for minutes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.app.conftest import build_store

ROOT = Path(__file__).resolve().parents[2]


def short_run(tmp_path: Path, script: str, *args: str, **env: str) -> tuple[dict, str]:
    """Run benchmarks/SCRIPT on the tests' tiny model with ``--out``: its one run's JSON,
    and the Markdown it wrote."""
    store = build_store(tmp_path / "store").root
    out = tmp_path / Path(script).stem
    done = subprocess.run(
        [sys.executable, f"benchmarks/{script}", "--out", str(out), *args],
        cwd=ROOT,
        env={**os.environ, "DNE_MODEL_STORE": str(store), **env},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    [run] = json.loads(out.with_suffix(".json").read_text())
    return run, out.with_suffix(".md").read_text()


@pytest.mark.slow
def test_a_short_run_of_the_suite_writes_its_table_and_json(tmp_path: Path) -> None:
    run, text = short_run(
        tmp_path,
        "suite.py",
        "--seconds", "1",
        "--warmup", "0.2",
        "--concurrency", "1,8",
        "--batches", "1,8",
        "--component-seconds", "0.1",
        "--client", "python",
        "--note", "smoke run",
        DNE_THREADS="1",
    )  # fmt: skip
    assert run["machine"]["cores"] == os.cpu_count() and run["machine"]["commit"]
    cached = "/models/emoji/1/seed/42"
    measured = {(p["server"], p["path"], p["connections"]) for p in run["points"]}
    assert measured == {
        (server, path, c)
        for server, path in [
            ("service", "/random"), ("service", cached), ("naive", "/random"), ("static", cached),
            ("service (pool off)", "/random"),
        ]
        for c in (1, 8)
    }  # fmt: skip
    for p in run["points"]:
        assert p["req_s"] > 0 and p["non_2xx"] == 0, p
        assert p["p50_ms"] <= p["p90_ms"] <= p["p99_ms"], p
        assert p["rss_max_mb"] > 0 and p["server_cpu_cores"] > 0, p
    fresh = [p for p in run["points"] if p["server"] == "service" and p["path"] == "/random"]
    assert all(p["mean_batch"] >= 1 for p in fresh)
    assert [p["pool_hit_share"] > 0 for p in fresh if p["connections"] == 1] == [True]
    pool_off = [p for p in run["points"] if p["server"] == "service (pool off)"]
    assert all(p["pool_hit_share"] == 0 for p in pool_off)
    assert set(run["generator"]["img_s"]["fp32"]) == {"1", "8"}  # JSON keys are strings
    assert {r["encoder"] for r in run["png"]} >= {"Pillow level 1", "Pillow level 6"}
    assert "| fresh `/random`: connections |" in text and "| cached seed: connections |" in text
    assert "cold start to /readyz" in text and "p50 at concurrency 1" in text
    assert "smoke run" in text


@pytest.mark.slow
def test_a_short_run_of_the_two_multi_process_designs(tmp_path: Path) -> None:
    """benchmarks/frontends.py: design A (DNE_WORKERS) and design B (front ends feeding one
    painter over a Unix socket) both serve /random and are measured."""
    run, markdown = short_run(
        tmp_path,
        "frontends.py",
        "--seconds", "1",
        "--warmup", "1",
        "--concurrency", "4",
        "--workers", "2",
        "--client", "python",
    )  # fmt: skip
    assert [(p["design"], p["n"], p["connections"]) for p in run["points"]] == [
        ("A", 2, 4),
        ("B", 2, 4),
    ]
    for p in run["points"]:
        assert p["req_s"] > 0 and p["non_2xx"] == 0, p
    # B's painter is counted with its front ends (uvicorn's supervisor and 2 workers).
    assert run["points"][1]["processes"] >= 4
    assert "| B: 2 front ends + 1 painter |" in markdown
