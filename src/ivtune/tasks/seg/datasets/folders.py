"""Generic layout ``ROOT/{split}/{vis, ir, labels}/NAME.*`` (what :func:`ivtune.data.write_synthetic_dataset` writes).

Classes come from the ``classes`` option or ``ROOT/classes.txt`` (one ``name`` or ``index name`` per line). Splits
are the sub-folders of ``ROOT`` that contain a ``vis`` folder. Names ending in ``D``/``N``/``F`` get the condition
day/night/fog.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ....data.layout import read_classes_file, require_dir
from ....data.pairs import Transform
from ....errors import ConfigError, DataError
from ..dataset import PairedSegDataset, default_palette
from .split_folders import split_folder_dataset


def available_splits(root: Path, vis_dir: str = "vis") -> list[str]:
    """Sub-folders of ``root`` holding a ``vis_dir`` folder."""
    return sorted(p.name for p in Path(root).iterdir() if (p / vis_dir).is_dir()) if Path(root).is_dir() else []


def build(
    root: Path,
    split: str,
    transform: Transform | None = None,
    *,
    classes: Sequence[str] | None = None,
    palette: Sequence[tuple[int, int, int]] | None = None,
    strict: bool = True,
    with_labels: bool = True,
    ignore_index: int = 255,
    ir_high_depth: str = "minmax",
    vis_dir: str = "vis",
    ir_dir: str = "ir",
    label_dir: str = "labels",
) -> PairedSegDataset:
    """A split of a ``folders`` tree.

    Args:
        root: the tree root.
        split: a sub-folder of ``root`` (e.g. ``train``).
        transform: see :class:`PairedSegDataset`.
        classes: class names; default ``root/classes.txt``.
        palette: one RGB colour per class; default a fixed distinct palette.
        strict: raise listing every missing file; ``False`` keeps the records for ``scan()``.
        with_labels: ``False`` reads images only.
        ignore_index: label value ignored by loss and metrics.
        ir_high_depth: scaling of >8-bit thermal files.
        vis_dir: name of the visible folder.
        ir_dir: name of the infrared folder.
        label_dir: name of the label folder.

    Returns:
        The dataset.
    """
    root = require_dir(Path(root), "folders dataset root")
    splits = available_splits(root, vis_dir)
    if split not in splits:
        raise ConfigError(
            f"Split {split!r} not found under {root}; splits there (folders with a {vis_dir!r} sub-folder): "
            f"{', '.join(splits) or '(none)'}."
        )
    if classes is None:
        path = root / "classes.txt"
        if not path.is_file():
            raise DataError(
                f"No class list for {root}: pass classes=[...] or write {path} (one class name per line, class 0 "
                "first)."
            )
        classes = read_classes_file(path)
    classes = tuple(classes)
    pal = list(palette) if palette is not None else default_palette(len(classes))
    return split_folder_dataset(root, split, (vis_dir, ir_dir, label_dir), classes=classes, palette=pal,
                                name="folders", transform=transform, strict=strict, with_labels=with_labels,
                                ignore_index=ignore_index, ir_high_depth=ir_high_depth)
