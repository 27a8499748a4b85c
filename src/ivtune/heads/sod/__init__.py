"""RGB-T salient object detection: the CPNet-style decoder and the two-input model (SPEC.md section 9.1)."""

from .decoder import ConvBNGELU, ConvNeXtBlock, CPDecoder
from .model import SaliencyModel, iou_loss

__all__ = ["CPDecoder", "ConvBNGELU", "ConvNeXtBlock", "SaliencyModel", "iou_loss"]
