"""Object detection: datasets (M3FD, LLVIP, FLIR aligned, KAIST, MSRS, folders, synthetic) and their annotation
formats, box-aware transforms, torchvision FCOS / RetinaNet / Faster R-CNN on the IV backbone, COCO and KAIST
metrics, and the registered task :data:`TASK`."""

from .dataset import DetRecord, PairedDetDataset, det_to_tensors, sanitize_boxes
from .datasets import DET_DATASETS, build_det_dataset
from .formats import RawBoxes, parse_coco, parse_kaist, parse_pixel_boxes, parse_voc, parse_yolo
from .metrics import coco_evaluate, kaist_miss_rate, plot_pr_curves, write_det_report
from .model import DETECTORS, DetectionModel
from .task import TASK
from .transforms import build_det_transforms, collate_det

__all__ = ["TASK", "DET_DATASETS", "DETECTORS", "DetRecord", "DetectionModel", "PairedDetDataset", "RawBoxes",
           "build_det_dataset", "build_det_transforms", "coco_evaluate", "collate_det", "det_to_tensors",
           "kaist_miss_rate", "parse_coco", "parse_kaist", "parse_pixel_boxes", "parse_voc", "parse_yolo",
           "plot_pr_curves", "sanitize_boxes", "write_det_report"]
