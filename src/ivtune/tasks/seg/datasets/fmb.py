"""FMB (Liu et al., SegMiF, ICCV 2023): full-time multi-modality benchmark, 14 classes + background.

Layout: ``ROOT/{train,test}/{Visible, Infrared, Label}/NAME.png``; 1,220 train / 280 test pairs, 800x600. Label 0 is
background/unlabelled; 1..14 are FMB's published classes Road, Sidewalk, Building, Traffic Light, Traffic Sign,
Vegetation, Sky, Person, Car, Truck, Bus, Motorcycle, Bicycle, Pole (spelt snake_case here, like the other datasets).

Whether mIoU includes background is a configuration choice, and papers differ (MRFS / M-SpecGene configs use 15
classes): keep the default to count it, or pass ``ignore_index=0`` to leave background out of training and metrics.
State the choice next to any reported number.

Terms: no licence statement found in ``JinyuanLiu-CV/SegMiF``; treat as research-only.
"""

from __future__ import annotations

from .split_folders import split_folder_builder

CLASSES = ("background", "road", "sidewalk", "building", "traffic_light", "traffic_sign", "vegetation", "sky",
           "person", "car", "truck", "bus", "motorcycle", "bicycle", "pole")
# Cityscapes colours for the classes FMB shares with it, so masks read the same across benchmarks.
PALETTE = [(0, 0, 0), (128, 64, 128), (244, 35, 232), (70, 70, 70), (250, 170, 30), (220, 220, 0), (107, 142, 35),
           (70, 130, 180), (220, 20, 60), (0, 0, 142), (0, 0, 70), (0, 60, 100), (0, 0, 230), (119, 11, 32),
           (153, 153, 153)]
SPLITS = ("train", "test")
FOLDERS = ("Visible", "Infrared", "Label")

build = split_folder_builder("fmb", FOLDERS, CLASSES, PALETTE, conditions_in_names=False)
