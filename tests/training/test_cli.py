"""The ``python -m training`` command line as a user meets it: help that says one thing per
option, and one-line errors (status 1 for a bad file or value, 2 for wrong usage)."""

from __future__ import annotations

import re
from dataclasses import fields
from pathlib import Path

import pytest

from tests.training.test_train import run_cli
from training.cli import build_parser, main
from training.config import PRESETS, TrainConfig


def subcommand_help(name: str) -> str:
    parser = build_parser()
    action = next(a for a in parser._actions if a.dest == "command")
    return action.choices[name].format_help()


def test_train_help_gives_one_default_per_option_and_marks_the_required_ones() -> None:
    text = subcommand_help("train")
    assert "default: None" not in text
    options = re.split(r"\n  (?=--)", text.split("\noptions:\n", 1)[1].split("\npresets")[0])
    for f in fields(TrainConfig):
        flag = "--" + f.name.replace("_", "-")
        [entry] = [o for o in options if o.startswith(flag + " ") or o.startswith(flag + ",")]
        said = re.findall(r"\((default: [^)]*|required)\)", " ".join(entry.split()))
        assert said == (["required"] if flag in ("--data", "--run-dir") else [said[0]]), entry
        assert said[0] == "required" or said[0] == f"default: {f.default!r}", entry
    usage = " ".join(text.split("\n\n", 1)[0].split())
    assert " --data DATA --run-dir RUN_DIR " in usage  # not in [brackets]: required


def test_train_help_says_how_presets_and_options_combine_and_offers_working_choices() -> None:
    text = " ".join(subcommand_help("train").split())
    assert "from the command line if given, else from --preset's recipe, else the default" in text
    for name in PRESETS:
        assert f" {name}: --" in text
    assert "--no-channels-last" in text  # booleans as the options that set them
    assert "--amp {auto,bf16,none}" in text and "fp16" not in text


def test_evaluate_help_says_how_to_get_a_feature_network_for_your_own_x() -> None:
    text = " ".join(subcommand_help("evaluate").split())
    assert "python -m training train-features --data data/cats.dne.gz" in text
    assert "--features cats-features" in text


def one_line_error(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    assert main(list(args)) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    return err


def test_a_missing_or_unreadable_data_file_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = ["--run-dir", str(tmp_path / "run")]
    missing = one_line_error(capsys, "train", "--data", str(tmp_path / "nope.dne.gz"), *run)
    assert "nope.dne.gz: no such data-set file (make one with build-emoji" in missing
    (tmp_path / "folder.dne.gz").mkdir()
    unreadable = one_line_error(capsys, "train", "--data", str(tmp_path / "folder.dne.gz"), *run)
    assert "folder.dne.gz: cannot read it (Is a directory)" in unreadable
    (tmp_path / "text.dne.gz").write_text("not a data set")
    garbage = one_line_error(capsys, "train", "--data", str(tmp_path / "text.dne.gz"), *run)
    assert "text.dne.gz: not a data-set file" in garbage
    assert not (tmp_path / "run").exists()  # nothing started


def test_option_values_that_make_no_run_are_one_line(
    shapes_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = ["train", "--data", str(shapes_file), "--run-dir", str(tmp_path / "run")]
    assert "--g-config is not JSON" in one_line_error(capsys, *base, "--g-config", "{ngf: 8}")
    assert "unknown augmentation 'blur'" in one_line_error(capsys, *base, "--augment", "blur")
    assert "--batch-size must be at least 1" in one_line_error(capsys, *base, "--batch-size", "0")
    bogus = one_line_error(capsys, *base, "--g-config", '{"wings": 2}')
    assert "--g-config/--d-config" in bogus and "wings" in bogus


def test_the_real_command_ends_without_a_traceback(tmp_path: Path) -> None:
    done = run_cli("train", "--data", str(tmp_path / "x.dne.gz"), "--run-dir", str(tmp_path))
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines() == [
        f"error: {tmp_path / 'x.dne.gz'}: no such data-set file "
        "(make one with build-emoji or build-folder)"
    ]
    usage = run_cli("train", "--run-dir", str(tmp_path), "--amp", "fp16")
    assert usage.returncode == 2 and "invalid choice: 'fp16'" in usage.stderr
    missing = run_cli("train", "--run-dir", str(tmp_path))
    assert missing.returncode == 2 and "the following arguments are required: --data" in (
        missing.stderr
    )


def test_a_resume_that_changes_the_run_is_one_warning_line(
    shapes_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    from tests.training.test_train import tiny_args
    from training import checkpoint as ckpt

    run = tmp_path / "run"
    args = ["train", "--preset", "sngan", "--data", str(shapes_file), "--run-dir", str(run)]
    args += [*tiny_args("sngan"), "--batch-size", "4", "--no-progress"]
    args += ["--threads", "1"]
    assert main([*args, "--steps", "1"]) == 0
    state_file = ckpt.latest_checkpoint(run / "checkpoints") / ckpt.STATE
    state_file.write_text(json.dumps(json.loads(state_file.read_text()) | {"world": 2}))
    capsys.readouterr()
    assert main([*args, "--steps", "2"]) == 0
    warned = [line for line in capsys.readouterr().err.splitlines() if "warning" in line]
    assert len(warned) == 1 and warned[0].startswith("warning: ") and "2 processes" in warned[0]
