"""What ``GET /models`` shows: the stored manifests as a visitor should see them.

A manifest records the exact training command, paths of the training machine included
(``--data /root/.cache/dne/data/emoji.dne.gz``). The stored file keeps them (they are
its provenance); what is served has every absolute path cut to its last part, and a
link to the sample grid where the manifest names one.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from model_store import Manifest, ModelStore, StoreError

# An absolute POSIX path (/a/b/c), a home one (~/a/b) or a Windows one (C:\a\b), not
# inside a URL (https://host/a/b: the slashes there follow ':' or a word character).
LOCAL_PATH = re.compile(
    r"(?<![\w:/.~-])(?:~?/(?:[^\s/'\"]+/)*|[A-Za-z]:\\(?:[^\s\\'\"]+\\)*)([^\s/\\'\"]+)"
)


def strip_local_paths(value: Any) -> Any:
    """``value`` (JSON) with every machine-local path reduced to its file name."""
    if isinstance(value, str):
        return LOCAL_PATH.sub(r"\1", value)
    if isinstance(value, list):
        return [strip_local_paths(item) for item in value]
    if isinstance(value, dict):
        return {key: strip_local_paths(item) for key, item in value.items()}
    return value


def sample_grid_url(m: Manifest) -> str:
    return f"/models/{m.name}/{m.version}/samples.png"


def public_manifest(store: ModelStore, m: Manifest, served: bool) -> dict[str, Any]:
    shown = strip_local_paths(m.model_dump(mode="json"))
    grid = sample_grid_file(store, m)
    return {**shown, "sample_grid_url": sample_grid_url(m) if grid else None, "served": served}


def sample_grid_file(store: ModelStore, m: Manifest) -> Path | None:
    """The sample grid's file, if the manifest names one that is there."""
    if not m.sample_grid or Path(m.sample_grid).name != m.sample_grid:
        return None  # no grid, or a name that would leave the model's folder
    try:
        path = store.resolve(m.name, m.version) / m.sample_grid
    except StoreError:
        return None
    return path if path.is_file() else None
