"""The shared pair layer: what every task's data uses.

- :mod:`.io`: image readers (8-bit and high-depth thermal, labels, packed MFNet files);
- :mod:`.pairs`: the paired dataset base with its target hooks, the sample contract and the batch collate;
- :mod:`.scan`: the scan report of ``ivtune data check`` and the pair checks;
- :mod:`.layout`: finding folders, pairing files by stem, split and class lists;
- :mod:`.transforms`: the paired transform pipeline and its shared steps (flip, VIS photometry, normalisation);
- :mod:`.scenes`: deterministic synthetic IR + VIS street scenes (masks, boxes and saliency from one draw);
- :mod:`.degrade`: sensor faults (missing, degraded, misregistered modalities) for evaluation and training.

Nothing here carries a task's name; the task slices (:mod:`ivtune.tasks`) build their datasets on it.
"""

from .io import read_gray, read_label, read_mfnet_4ch, read_rgb
from .pairs import PairedDataset, PairRecord, collate_pairs
from .scan import ScanReport, scan_pairs
from .scenes import SYNTHETIC_CLASSES, Scene, SyntheticScenes, make_scene, write_synthetic_dataset
from .transforms import PairedTransform, build_normalize, to_tensors

__all__ = [
    "PairRecord", "PairedDataset", "PairedTransform", "SYNTHETIC_CLASSES", "ScanReport", "Scene", "SyntheticScenes",
    "build_normalize", "collate_pairs", "make_scene", "read_gray", "read_label", "read_mfnet_4ch", "read_rgb",
    "scan_pairs", "to_tensors", "write_synthetic_dataset",
]
