"""RGB-T salient object detection: datasets (VT5000, VT1000, VT821, folders, synthetic), transforms, the CPNet-style
decoder, py_sod_metrics scoring, and the registered task :data:`TASK`."""

from .datasets import SOD_DATASETS, SaliencyDataset, build_sod_dataset
from .metrics import SODMetrics, write_sod_report
from .model import SaliencyModel
from .task import TASK
from .transforms import build_sod_transforms

__all__ = ["TASK", "SOD_DATASETS", "SaliencyDataset", "build_sod_dataset", "build_sod_transforms", "SODMetrics",
           "write_sod_report", "SaliencyModel"]
