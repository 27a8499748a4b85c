"""Evaluation metrics. ``seg``: confusion-matrix mIoU / accuracies in percent, and the segmentation report."""

from .seg import ConfusionMatrix, write_seg_report

__all__ = ["ConfusionMatrix", "write_seg_report"]
