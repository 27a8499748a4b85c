"""PST900 (Shivakumar et al., ICRA 2020): RGB-thermal pairs from underground (DARPA SubT) scenes, 5 classes.

Layout: ``ROOT/{train,test}/{rgb, thermal, labels}/NAME.png``; common split 597 train / 288 test, 1280x720. Names
carry no day/night condition.

Terms: no licence statement found in ``ShreyasSkandanS/pst900_thermal_rgb``; treat as research-only.
"""

from __future__ import annotations

from .split_folders import split_folder_builder

CLASSES = ("background", "fire_extinguisher", "backpack", "hand_drill", "survivor")
PALETTE = [(0, 0, 0), (230, 40, 40), (40, 80, 220), (240, 200, 30), (40, 190, 80)]
SPLITS = ("train", "test")
FOLDERS = ("rgb", "thermal", "labels")

build = split_folder_builder("pst900", FOLDERS, CLASSES, PALETTE, conditions_in_names=False)
