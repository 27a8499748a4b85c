"""Paired infrared + visible data: readers, the sample contract, datasets, paired transforms, synthetic scenes.

Samples are dicts ``{"vis", "ir", "mask", "meta"}`` (see :mod:`ivtune.data.pairs`); batch them with
:func:`collate_pairs`.
"""

from .check import ScanReport, scan_seg_dataset
from .datasets import DATASETS, build_seg_dataset
from .io import read_gray, read_label, read_mfnet_4ch, read_rgb
from .pairs import PairedSegDataset, PairRecord, collate_pairs
from .synthetic import SYNTHETIC_CLASSES, Scene, SyntheticSegDataset, make_scene, write_synthetic_dataset
from .transforms import build_seg_transforms, to_tensors

__all__ = [
    "DATASETS", "PairRecord", "PairedSegDataset", "SYNTHETIC_CLASSES", "ScanReport", "Scene", "SyntheticSegDataset",
    "build_seg_dataset", "build_seg_transforms", "collate_pairs", "make_scene", "read_gray", "read_label",
    "read_mfnet_4ch", "read_rgb", "scan_seg_dataset", "to_tensors", "write_synthetic_dataset",
]
