"""Paired infrared + visible detection data: parsers (COCO, VOC, YOLO, KAIST bbGt), layouts, transforms, collate.

Samples: ``{"vis", "ir", "boxes" (N, 4) xyxy pixels, "labels" (N,) 0-based, "ignore" (N,), "meta"}``; see
:mod:`ivtune.data.det.dataset`. Build with :func:`build_det_dataset`, batch with :func:`collate_det`.
"""

from .dataset import DetRecord, DetScanReport, PairedDetDataset, det_to_tensors, sanitize_boxes
from .datasets import (
    DET_DATASETS,
    FLIR_CLASSES,
    KAIST_CLASSES,
    LLVIP_CLASSES,
    M3FD_CLASSES,
    MSRS_DET_CLASSES,
    SYNTHETIC_DET_CLASSES,
    SyntheticDetDataset,
    build_det_dataset,
    flir_key,
    kaist_condition,
)
from .formats import RawBoxes, parse_coco, parse_kaist, parse_pixel_boxes, parse_voc, parse_yolo
from .transforms import DETR_SIZES, DetTransformPipeline, build_det_transforms, collate_det, resized_shape

__all__ = [
    "DETR_SIZES", "DET_DATASETS", "DetRecord", "DetScanReport", "DetTransformPipeline", "FLIR_CLASSES",
    "KAIST_CLASSES", "LLVIP_CLASSES", "M3FD_CLASSES", "MSRS_DET_CLASSES", "PairedDetDataset", "RawBoxes",
    "SYNTHETIC_DET_CLASSES", "SyntheticDetDataset", "build_det_dataset", "build_det_transforms", "collate_det",
    "det_to_tensors", "flir_key", "kaist_condition", "parse_coco", "parse_kaist", "parse_pixel_boxes", "parse_voc",
    "parse_yolo", "resized_shape", "sanitize_boxes",
]
