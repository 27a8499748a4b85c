"""MFNet (Ha et al., IROS 2017): RGB-thermal urban driving scenes, 9 classes, 640x480.

Two layouts, detected from the folders under ``ROOT`` or chosen with ``layout=``:

- ``rtfnet``: ``images/NAME.png`` holds RGB + thermal in one 4-channel (RGBA-mode) PNG, ``labels/NAME.png`` the
  labels (RTFNet / MFNet-pytorch).
- ``separate``: ``RGB/NAME.png``, ``Thermal/NAME.png`` (``Modal/`` is accepted too), ``Label/NAME.png`` (CMX, Sigma).

Both keep the split lists at the root: ``train.txt``, ``val.txt``, ``test.txt``, one name per line without
extension (784 / 392 / 393 pairs). ``trainval`` is train + val (1,176), what Sigma and CMX train on; report which
split a number was trained on. mIoU is conventionally over all 9 classes including ``unlabeled``. Names end in ``D``
(day) or ``N`` (night).

Terms: distributed from the University of Tokyo MFNet project page for research use; no licence file in the
MFNet-pytorch repository.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ....data.io import read_mfnet_4ch
from ....data.layout import by_name, read_split_file, require_dir
from ....data.pairs import PairRecord, Transform, condition_from_name
from ....errors import ConfigError, DataError
from ..dataset import PairedSegDataset

CLASSES = ("unlabeled", "car", "person", "bike", "curve", "car_stop", "guardrail", "color_cone", "bump")
PALETTE = [(0, 0, 0), (30, 60, 200), (220, 40, 40), (40, 180, 60), (230, 200, 40), (150, 80, 200), (80, 200, 200),
           (250, 140, 30), (170, 110, 60)]
SPLITS = ("train", "val", "test", "trainval")
LAYOUTS = ("auto", "rtfnet", "separate")
_SPLIT_FILES = {"train": ("train",), "val": ("val",), "test": ("test",), "trainval": ("train", "val")}
_DAY_NIGHT = {"D": "day", "N": "night"}


class MFNetPackedDataset(PairedSegDataset):
    """MFNet ``rtfnet`` layout: visible and thermal come from one 4-channel PNG (``vis_path == ir_path``)."""

    def read_vis(self, index: int) -> np.ndarray:
        return read_mfnet_4ch(self.records[index].vis_path)[0]

    def read_ir(self, index: int) -> np.ndarray:
        return read_mfnet_4ch(self.records[index].ir_path)[1]

    def read_images(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        return read_mfnet_4ch(self.records[index].vis_path)  # one decode for both images


def detect_layout(root: Path) -> str:
    """``rtfnet`` if ``root/images`` exists, ``separate`` if ``root/RGB`` does, else a DataError naming both."""
    if (root / "images").is_dir():
        return "rtfnet"
    if (root / "RGB").is_dir():
        return "separate"
    found = sorted(p.name for p in root.iterdir() if p.is_dir())
    raise DataError(
        f"Cannot detect the MFNet layout of {root}: expected an 'images' folder (rtfnet layout) or an 'RGB' folder "
        f"(separate layout); found folders: {', '.join(found) or '(none)'}. Check the root or pass layout=."
    )


def build(
    root: Path,
    split: str,
    transform: Transform | None = None,
    *,
    layout: str = "auto",
    strict: bool = True,
    with_labels: bool = True,
    ignore_index: int = 255,
    ir_high_depth: str = "minmax",
) -> PairedSegDataset:
    """MFNet split ``train``, ``val``, ``test`` or ``trainval``.

    Args:
        root: the MFNet folder (holding the split lists).
        split: one of ``SPLITS``.
        transform: see :class:`PairedSegDataset`.
        layout: ``auto`` (detect), ``rtfnet`` or ``separate``.
        strict: raise listing every missing file; ``False`` keeps the records for ``scan()``.
        with_labels: ``False`` reads images only (no ``mask`` in the samples).
        ignore_index: label value ignored by loss and metrics.
        ir_high_depth: scaling of >8-bit thermal files (``separate`` layout).

    Returns:
        The dataset (an :class:`MFNetPackedDataset` for the ``rtfnet`` layout).
    """
    if layout not in LAYOUTS:
        raise ConfigError(f"MFNet layout must be one of {LAYOUTS}, got {layout!r}.")
    root = require_dir(Path(root), "MFNet root")
    if layout == "auto":
        layout = detect_layout(root)
    names: list[str] = []
    for part in _SPLIT_FILES[split]:
        names += read_split_file(root / f"{part}.txt")
    if layout == "rtfnet":
        images = by_name(names, require_dir(root / "images", "MFNet 'images' (rtfnet layout)"))
        vis = ir = images
        label_dir = root / "labels"
        cls = MFNetPackedDataset
    else:
        vis = by_name(names, require_dir(root / "RGB", "MFNet 'RGB' (separate layout)"))
        thermal = root / "Thermal" if (root / "Thermal").is_dir() or not (root / "Modal").is_dir() else root / "Modal"
        ir = by_name(names, require_dir(thermal, "MFNet 'Thermal' (separate layout)"))
        label_dir = root / "Label"
        cls = PairedSegDataset
    labels = by_name(names, require_dir(label_dir, "MFNet label")) if with_labels else {}
    records = [PairRecord(n, vis[n], ir[n], labels.get(n), condition_from_name(n, _DAY_NIGHT)) for n in names]
    return cls(records, CLASSES, PALETTE, ignore_index, transform, strict, f"mfnet/{split}", ir_high_depth)
