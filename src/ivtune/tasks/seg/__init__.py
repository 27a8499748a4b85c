"""Semantic segmentation: datasets (MFNet, MSRS, PST900, FMB, folders, synthetic), transforms, the SegFormer /
UperNet heads, mIoU, and the registered task :data:`TASK`."""

from .dataset import PairedSegDataset
from .datasets import DATASETS, build_seg_dataset
from .metrics import ConfusionMatrix, write_seg_report
from .model import SegmentationModel
from .task import TASK
from .transforms import build_seg_transforms

__all__ = ["TASK", "DATASETS", "PairedSegDataset", "build_seg_dataset", "build_seg_transforms", "ConfusionMatrix",
           "write_seg_report", "SegmentationModel"]
