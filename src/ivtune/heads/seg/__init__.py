"""Semantic segmentation: decoders (SegFormer all-MLP, UPerNet) and the two-input model (SPEC.md section 9.2)."""

from .decoder import SEG_HEADS, SegFormerHead, UperNetHead, build_seg_head
from .model import LayerNorm2d, SegmentationModel

__all__ = ["SEG_HEADS", "SegFormerHead", "UperNetHead", "build_seg_head", "LayerNorm2d", "SegmentationModel"]
