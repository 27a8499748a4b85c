"""Segmentation datasets stored as ``root/split/{vis, ir, label}`` folders (MSRS, PST900, FMB, the generic tree)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from ....data.layout import IMAGE_EXTS, pair_by_stem, require_dir
from ....data.pairs import Transform, condition_from_name
from ....errors import DataError
from ..dataset import PairedSegDataset


def split_folder_dataset(
    root: Path,
    split: str,
    folders: tuple[str, str, str],
    *,
    classes: tuple[str, ...],
    palette: list[tuple[int, int, int]],
    name: str,
    transform: Transform | None = None,
    strict: bool = True,
    with_labels: bool = True,
    ignore_index: int = 255,
    ir_high_depth: str = "minmax",
    condition: Callable[[str], str | None] = condition_from_name,
) -> PairedSegDataset:
    """A :class:`PairedSegDataset` from ``root/split/{vis, ir, label}`` folders, pairs matched by stem."""
    base = require_dir(Path(root), f"{name} root")
    split_dir = require_dir(base / split, f"{name} split {split!r}")
    vis_dir = require_dir(split_dir / folders[0], f"{name} visible")
    ir_dir = require_dir(split_dir / folders[1], f"{name} infrared")
    label_dir = require_dir(split_dir / folders[2], f"{name} label") if with_labels else None
    records = pair_by_stem(vis_dir, ir_dir, label_dir, condition)
    if not records:
        raise DataError(f"{name} split {split!r}: no images found in {vis_dir} (extensions {', '.join(IMAGE_EXTS)}).")
    return PairedSegDataset(records, classes, palette, ignore_index, transform, strict, f"{name}/{split}",
                            ir_high_depth)


def split_folder_builder(name: str, folders: tuple[str, str, str], classes: tuple[str, ...],
                         palette: list[tuple[int, int, int]], *, conditions_in_names: bool = True):
    """The registry ``build`` of a dataset stored as ``root/{split}/{folders}``: its options are those of every
    labelled segmentation dataset (``strict``, ``with_labels``, ``ignore_index``, ``ir_high_depth``)."""
    condition = condition_from_name if conditions_in_names else (lambda _: None)

    def build(root: Path, split: str, transform: Transform | None = None, *, strict: bool = True,
              with_labels: bool = True, ignore_index: int = 255, ir_high_depth: str = "minmax") -> PairedSegDataset:
        return split_folder_dataset(root, split, folders, classes=classes, palette=palette, name=name,
                                    transform=transform, strict=strict, with_labels=with_labels,
                                    ignore_index=ignore_index, ir_high_depth=ir_high_depth, condition=condition)

    build.__doc__ = (f"{name} split ``train`` or ``test`` from ``ROOT/{{split}}/{{{', '.join(folders)}}}``; the "
                     "options as in ``mfnet.build``.")
    return build

