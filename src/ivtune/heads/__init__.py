"""Task heads on top of :class:`ivtune.IVBackbone`: one subpackage per task (``seg``: semantic segmentation)."""

from .seg import SEG_HEADS, SegFormerHead, SegmentationModel, UperNetHead, build_seg_head

__all__ = ["SEG_HEADS", "SegFormerHead", "SegmentationModel", "UperNetHead", "build_seg_head"]
