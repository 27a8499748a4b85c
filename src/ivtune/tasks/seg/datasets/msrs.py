"""MSRS (Tang et al., PIAFusion, Information Fusion 2022): aligned MFNet road scenes, same 9 classes as MFNet.

Layout (``Linfeng-Tang/MSRS``): ``ROOT/{train,test}/{vi, ir, Segmentation_labels}/NAME.png``; 1,083 train and 361
test pairs, 640x480. Names end in ``D`` (day) or ``N`` (night).

Terms: the MSRS repository has no licence file; it is derived from MFNet (University of Tokyo, research use) and asks
users to cite PIAFusion. Treat as research-only.
"""

from __future__ import annotations

from .mfnet import CLASSES, PALETTE
from .split_folders import split_folder_builder

SPLITS = ("train", "test")
FOLDERS = ("vi", "ir", "Segmentation_labels")

build = split_folder_builder("msrs", FOLDERS, CLASSES, PALETTE)
