"""MSRS (Tang et al., PIAFusion, Information Fusion 2022): aligned MFNet road scenes, same 9 classes as MFNet.

Layout (``Linfeng-Tang/MSRS``): ``ROOT/{train,test}/{vi, ir, Segmentation_labels}/NAME.png``; 1,083 train and 361
test pairs, 640x480. Names end in ``D`` (day) or ``N`` (night).

Terms: the MSRS repository has no licence file; it is derived from MFNet (University of Tokyo, research use) and asks
users to cite PIAFusion. Treat as research-only.
"""

from __future__ import annotations

from pathlib import Path

from ....data.pairs import Transform
from ..dataset import PairedSegDataset
from .mfnet import CLASSES, PALETTE
from .split_folders import split_folder_dataset

SPLITS = ("train", "test")
FOLDERS = ("vi", "ir", "Segmentation_labels")


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
    """MSRS split ``train`` or ``test``; see the module docstring for the layout. Options as in ``mfnet.build``."""
    return split_folder_dataset(root, split, FOLDERS, classes=CLASSES, palette=PALETTE, name="msrs",
                                transform=transform, strict=strict, with_labels=with_labels,
                                ignore_index=ignore_index, ir_high_depth=ir_high_depth)
