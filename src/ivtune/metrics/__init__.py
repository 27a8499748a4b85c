"""Evaluation metrics. ``seg``: confusion-matrix mIoU / accuracies in percent, and the segmentation report."""

from .seg import ConfusionMatrix, write_seg_report

__all__ = ["ConfusionMatrix", "write_seg_report"]
from .det import coco_evaluate, kaist_miss_rate, plot_pr_curves, write_det_report  # noqa: E402

__all__ += ["coco_evaluate", "kaist_miss_rate", "plot_pr_curves", "write_det_report"]
