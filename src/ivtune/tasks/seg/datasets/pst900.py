"""PST900 (Shivakumar et al., ICRA 2020): RGB-thermal pairs from underground (DARPA SubT) scenes, 5 classes.

Layout: ``ROOT/{train,test}/{rgb, thermal, labels}/NAME.png``; common split 597 train / 288 test, 1280x720. Names
carry no day/night condition.

Terms: no licence statement found in ``ShreyasSkandanS/pst900_thermal_rgb``; treat as research-only.
"""

from __future__ import annotations

from pathlib import Path

from ....data.pairs import Transform
from ..dataset import PairedSegDataset
from .split_folders import split_folder_dataset

CLASSES = ("background", "fire_extinguisher", "backpack", "hand_drill", "survivor")
PALETTE = [(0, 0, 0), (230, 40, 40), (40, 80, 220), (240, 200, 30), (40, 190, 80)]
SPLITS = ("train", "test")
FOLDERS = ("rgb", "thermal", "labels")


def build(
    root: Path,
    split: str,
    transform: Transform | None = None,
    *,
    strict: bool = True,
    with_labels: bool = True,
    ignore_index: int = 255,
    ir_high_depth: str = "minmax",
) -> PairedSegDataset:
    """PST900 split ``train`` or ``test``; see the module docstring for the layout. Options as in ``mfnet.build``."""
    return split_folder_dataset(root, split, FOLDERS, classes=CLASSES, palette=PALETTE, name="pst900",
                                transform=transform, strict=strict, with_labels=with_labels,
                                ignore_index=ignore_index, ir_high_depth=ir_high_depth,
                                condition=lambda name: None)
