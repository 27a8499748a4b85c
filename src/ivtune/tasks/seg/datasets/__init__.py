"""Segmentation dataset registry: ``build_seg_dataset(name, root, split, transform, **options)``.

One small module per dataset; each exposes ``build(root, split, transform, **options)`` and, where fixed, ``SPLITS``
and ``CLASSES``. Roots always come from the caller (config or CLI); nothing here knows where data lives.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ....data.pairs import Transform
from ....data.registry import DatasetEntry, build_from_registry
from ....data.scenes import SYNTHETIC_CLASSES
from ..dataset import PairedSegDataset
from . import fmb, folders, mfnet, msrs, pst900, synthetic

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
        transform: sample transform, e.g. :func:`ivtune.tasks.seg.build_seg_transforms`; None gives [0, 1] tensors.
        **options: ``strict`` and the dataset's options (``with_labels``, ``ignore_index``, MFNet ``layout``,
            ``folders`` ``classes``, synthetic ``num_samples`` / ``seed`` ...).

    Raises:
        ConfigError: unknown name, split or option, or a missing root.
        DataError: missing folders or files (all missing partners listed when ``strict``).
    """
    return build_from_registry(DATASETS, "segmentation", name, root, split, transform, **options)


__all__ = ["DATASETS", "build_seg_dataset"]
