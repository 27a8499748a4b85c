"""Object detection on visible + infrared pairs: FPN neck and torchvision detectors (SPEC.md section 9.3)."""

from .model import DETECTORS, DetectionModel, default_size_divisible
from .neck import DetNeck

__all__ = ["DETECTORS", "DetectionModel", "DetNeck", "default_size_divisible"]
