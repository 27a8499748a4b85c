"""Dataset registry: ``build_seg_dataset(name, root, split, transform, **options)``.

One small module per dataset; each exposes ``build(root, split, transform, **options)`` and, where fixed, ``SPLITS``
and ``CLASSES``. Roots always come from the caller (config or CLI); nothing here knows where data lives.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...errors import ConfigError
from ..pairs import PairedSegDataset, Transform
from ..synthetic import SYNTHETIC_CLASSES
from . import fmb, folders, mfnet, msrs, pst900, synthetic


@dataclass(frozen=True)
class DatasetEntry:
    """How to build one dataset.

    Attributes:
        build: ``build(root, split, transform, **options) -> PairedSegDataset``.
        splits: valid split names; None when they are the folders found under the root.
        classes: the class list; None when it comes from the root or the options.
        needs_root: False for generated data.
    """

    build: Callable[..., PairedSegDataset]
    splits: tuple[str, ...] | None
    classes: tuple[str, ...] | None
    needs_root: bool = True

    def options(self) -> list[str]:
        """Keyword options ``build`` accepts besides root, split and transform."""
        params = inspect.signature(self.build).parameters.values()
        return [p.name for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY]


DATASETS: dict[str, DatasetEntry] = {
    "mfnet": DatasetEntry(mfnet.build, mfnet.SPLITS, mfnet.CLASSES),
    "msrs": DatasetEntry(msrs.build, msrs.SPLITS, mfnet.CLASSES),
    "pst900": DatasetEntry(pst900.build, pst900.SPLITS, pst900.CLASSES),
    "fmb": DatasetEntry(fmb.build, fmb.SPLITS, fmb.CLASSES),
    "folders": DatasetEntry(folders.build, None, None),
    "synthetic": DatasetEntry(synthetic.build, synthetic.SPLITS, SYNTHETIC_CLASSES, needs_root=False),
}


def build_seg_dataset(
    name: str,
    root: str | Path | None,
    split: str,
    transform: Transform | None = None,
    **options: Any,
) -> PairedSegDataset:
    """Build a paired segmentation dataset by name.

    Args:
        name: a key of :data:`DATASETS` (case-insensitive).
        root: the dataset folder; may be None for ``synthetic``.
        split: a split of that dataset (e.g. ``train``, ``test``; MFNet also ``val`` and ``trainval``).
        transform: sample transform, e.g. :func:`ivtune.data.build_seg_transforms`; None gives [0, 1] tensors.
        **options: dataset options (``strict``, ``with_labels``, ``ignore_index``, MFNet ``layout``, ``folders``
            ``classes``, synthetic ``num_samples`` / ``seed`` ...).

    Returns:
        The dataset.

    Raises:
        ConfigError: unknown name, split or option, or a missing root.
        DataError: missing folders or files (all missing partners listed when ``strict``).
    """
    key = name.lower()
    if key not in DATASETS:
        raise ConfigError(f"Unknown dataset {name!r}. Known datasets: {', '.join(sorted(DATASETS))}.")
    entry = DATASETS[key]
    if entry.splits is not None and split not in entry.splits:
        raise ConfigError(f"Unknown split {split!r} for dataset {key!r}. Valid splits: {', '.join(entry.splits)}.")
    accepted = entry.options()
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise ConfigError(
            f"Unknown option(s) {', '.join(map(repr, unknown))} for dataset {key!r}. Accepted: {', '.join(accepted)}."
        )
    if root is None and entry.needs_root:
        raise ConfigError(f"Dataset {key!r} needs a root folder; got root=None. Set data.root in the config.")
    return entry.build(Path(root) if root is not None else None, split, transform, **options)


__all__ = ["DATASETS", "DatasetEntry", "build_seg_dataset"]
