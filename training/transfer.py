"""Carrying a stored model between machines in files of bounded size, checked end to end.

``pack_version`` turns a stored version folder into ``model.tar`` (deterministic bytes) or,
when it is bigger than one file may be, ``model.tar.part-00``, ``-01``, ...; ``SHA256SUMS``
lists the sha256 of every part and of the whole archive (``sha256sum -c --ignore-missing``
reads it). ``import_model`` checks all of them, reassembles, unpacks, loads the model with
the store's own checks (weights sha256, seed draw) and stores it as the next version here.
"""

from __future__ import annotations

import hashlib
import io
import tarfile
import tempfile
from pathlib import Path

from PIL import Image

from model_store import Manifest, ModelStore
from model_store.store import MANIFEST_FILE, read_manifest
from training.checkpoint import RunError

ARCHIVE = "model.tar"
SUMS = "SHA256SUMS"
PART_BYTES = 15 * 2**20  # under the 16 MiB a GPU run may send back per file


def pack_version(version_dir: Path, out: Path, part_bytes: int = PART_BYTES) -> list[Path]:
    """Write ``version_dir`` (``<store>/<name>/<version>``) into ``out`` as one archive or
    its parts, and ``SHA256SUMS``; returns the files written."""
    manifest = read_manifest(version_dir)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path in sorted(p for p in version_dir.iterdir() if p.is_file()):
            info = tarfile.TarInfo(f"{manifest.name}/{manifest.version}/{path.name}")
            info.size, info.mode = path.stat().st_size, 0o644
            tar.addfile(info, io.BytesIO(path.read_bytes()))
    data = buffer.getvalue()
    out.mkdir(parents=True, exist_ok=True)
    if len(data) <= part_bytes:
        parts = {ARCHIVE: data}
    else:
        chunks = range(0, len(data), part_bytes)
        parts = {f"{ARCHIVE}.part-{i:02d}": data[s : s + part_bytes] for i, s in enumerate(chunks)}
    sums = [f"{hashlib.sha256(b).hexdigest()}  {name}" for name, b in parts.items()]
    if len(parts) > 1:
        sums.append(f"{hashlib.sha256(data).hexdigest()}  {ARCHIVE}")
    written = []
    for name, chunk in parts.items():
        (out / name).write_bytes(chunk)
        written.append(out / name)
    (out / SUMS).write_text("\n".join(sums) + "\n")
    return [*written, out / SUMS]


def reassemble(folder: Path) -> bytes:
    """The archive from ``folder``'s parts (or whole file), every sha256 checked."""
    sums_file = folder / SUMS
    if not sums_file.is_file():
        raise RunError(f"{sums_file}: missing (is {folder} what gpu-train sent back?)")
    expected = {}
    for line in sums_file.read_text().splitlines():
        digest, name = line.split(maxsplit=1)
        expected[name.lstrip("*")] = digest
    parts = sorted(n for n in expected if n.startswith(f"{ARCHIVE}.part-")) or [ARCHIVE]
    chunks = []
    for name in parts:
        path = folder / name
        if not path.is_file():
            raise RunError(f"{path}: missing; {SUMS} lists it")
        chunk = path.read_bytes()
        if hashlib.sha256(chunk).hexdigest() != expected[name]:
            raise RunError(f"{path}: sha256 differs from {SUMS}: damaged on the way")
        chunks.append(chunk)
    data = b"".join(chunks)
    if hashlib.sha256(data).hexdigest() != expected[ARCHIVE]:
        raise RunError(f"{folder}: the reassembled {ARCHIVE} differs from {SUMS}")
    return data


def import_model(
    folder: Path, store: ModelStore, name: str | None = None, version: int | None = None
) -> Manifest:
    """Check and unpack what ``pack_version`` wrote, then store it in ``store`` as ``name``
    (default: its own) at ``version`` (default: the next free one)."""
    data = reassemble(folder)
    with tempfile.TemporaryDirectory() as tmp:
        with tarfile.open(fileobj=io.BytesIO(data)) as tar:
            tar.extractall(tmp, filter="data")
        [manifest_path] = Path(tmp).glob(f"*/*/{MANIFEST_FILE}")
        source = manifest_path.parent
        packed = read_manifest(source)
        loaded = ModelStore(tmp).load(packed.name, packed.version)  # sha256 and seed checks
        extra = {
            p.name: p.read_bytes()
            for p in source.iterdir()
            if p.name not in (packed.weights_file, MANIFEST_FILE, packed.sample_grid)
        }
        grid = None
        if packed.sample_grid and (source / packed.sample_grid).is_file():
            with Image.open(source / packed.sample_grid) as image:
                grid = image.copy()
        kept = packed.model_dump(
            include={"description", "alpha", "class_names", "class_slugs", "training"}
            | {"credits", "metrics", "created_at"}
        )
        kept["training"] = packed.training
        return store.save(
            loaded.generator,
            name=name or packed.name,
            version=version,
            sample_grid=grid,
            extra_files=extra,
            **kept,
        )
