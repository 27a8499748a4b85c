"""Semantic segmentation metrics from a confusion matrix, and the ``metrics.json`` / ``metrics.md`` report.

Every value is a **percentage (0-100)**; no fraction is reported anywhere. Keys: ``miou``, ``pixel_acc``,
``mean_acc``, ``per_class_iou``, ``per_class_acc``, ``num_pixels``.

Averaging rule: a class's IoU is ``TP / (TP + FP + FN)``. A class absent from both the ground truth and the
predictions of everything evaluated has a zero union; its IoU is NaN and it is left out of ``miou``. A class that
appears only in the predictions (false positives) has IoU 0 and counts. This is the mmseg / torchmetrics
convention. ``mean_acc`` averages per-class recall ``TP / (TP + FN)`` over the classes present in the ground truth.
MFNet-style mIoU over all 9 classes (including "unlabeled") is obtained by keeping that class a real class and
using a different ``ignore_index``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from ...data.jsonsafe import json_safe
from ...errors import ConfigError, InputShapeError


def check_ignore_index(ignore_index: int, num_classes: int) -> None:
    """Raise :class:`ConfigError` when ``ignore_index`` is one of the ``num_classes`` class indices."""
    if 0 <= ignore_index < num_classes:
        raise ConfigError(
            f"ignore_index={ignore_index} is a valid class index for num_classes={num_classes}; pick a value "
            "outside [0, num_classes), e.g. 255."
        )


class ConfusionMatrix:
    """Accumulates a (K, K) int64 confusion matrix: rows = ground truth, columns = prediction.

    The matrix lives on the device of the tensors given to :meth:`update` (no host copy per batch).

    Args:
        num_classes: number of classes ``K``.
        ignore_index: target value that marks unlabelled pixels; they are skipped whatever the prediction.
    """

    def __init__(self, num_classes: int, ignore_index: int = 255) -> None:
        if not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes < 1:
            raise ConfigError(f"num_classes must be a positive int, got {num_classes!r}.")
        check_ignore_index(ignore_index, num_classes)
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.matrix = torch.zeros(num_classes, num_classes, dtype=torch.int64)

    def reset(self) -> None:
        """Zero the counts (keeps the device)."""
        self.matrix.zero_()

    @torch.no_grad()
    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        """Add a batch.

        Args:
            pred: predicted class indices, e.g. (B, H, W) int64 (``logits.argmax(1)``).
            target: ground-truth indices of the same shape, ``ignore_index`` where unlabelled.
        """
        if pred.shape != target.shape:
            raise InputShapeError(
                f"pred {tuple(pred.shape)} and target {tuple(target.shape)} must have the same shape. Pass "
                "logits.argmax(1) (not logits) and resize the prediction to the mask size."
            )
        for name, t in (("pred", pred), ("target", target)):
            if t.is_floating_point() or t.dtype == torch.bool or t.is_complex():
                raise InputShapeError(
                    f"{name} must hold integer class indices, got {t.dtype}. Use logits.argmax(1) / mask.long()."
                )
        k = self.num_classes
        pred, target = pred.reshape(-1).long(), target.reshape(-1).long()
        valid = target != self.ignore_index
        pred, target = pred[valid], target[valid]
        for name, t in (("target", target), ("pred", pred)):
            bad = (t < 0) | (t >= k)
            if bool(bad.any()):
                values = torch.unique(t[bad])[:10].tolist()
                fix = (
                    f"map them to ignore_index ({self.ignore_index})"
                    if name == "target"
                    else "the model has more outputs than num_classes"
                )
                raise InputShapeError(f"{name} has values {values} outside [0, {k}) on labelled pixels: {fix}.")
        if self.matrix.device != pred.device:
            self.matrix = self.matrix.to(pred.device)
        # one bincount over the flattened (gt, pred) pair: index gt * K + pred
        self.matrix += torch.bincount(target * k + pred, minlength=k * k).reshape(k, k)

    def merge(self, other: ConfusionMatrix) -> ConfusionMatrix:
        """Add another matrix's counts to this one (same ``num_classes`` and ``ignore_index``); returns self."""
        if not isinstance(other, ConfusionMatrix):
            raise ConfigError(f"can only merge a ConfusionMatrix, got {type(other).__name__}.")
        if (other.num_classes, other.ignore_index) != (self.num_classes, self.ignore_index):
            raise ConfigError(
                f"cannot merge a ConfusionMatrix(num_classes={other.num_classes}, ignore_index={other.ignore_index})"
                f" into one with num_classes={self.num_classes}, ignore_index={self.ignore_index}."
            )
        self.matrix += other.matrix.to(self.matrix.device)
        return self

    def all_reduce(self) -> ConfusionMatrix:
        """Sum the matrix over ``torch.distributed`` ranks (no-op when not initialised); returns self.

        Call it once, after the last update: each call adds every rank's current counts to every rank.
        """
        if not (dist.is_available() and dist.is_initialized()):
            return self
        t = self.matrix
        if dist.get_backend() == "nccl" and not t.is_cuda:  # NCCL reduces CUDA tensors only
            t = t.to(torch.device("cuda", torch.cuda.current_device()))
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        self.matrix = t
        return self

    def compute(self) -> dict[str, Any]:
        """The metrics in percent (see the module docstring for the averaging rule).

        Returns:
            ``miou``, ``pixel_acc``, ``mean_acc`` (floats, NaN when undefined), ``per_class_iou``,
            ``per_class_acc`` (lists of K floats, NaN for classes the rule excludes), ``num_pixels`` (int).
        """
        m = self.matrix.detach().to("cpu", torch.float64)
        tp = m.diagonal()
        gt = m.sum(dim=1)  # TP + FN
        pr = m.sum(dim=0)  # TP + FP
        union = gt + pr - tp
        nan = torch.full_like(tp, math.nan)
        iou = torch.where(union > 0, tp / union.clamp_min(1), nan) * 100
        acc = torch.where(gt > 0, tp / gt.clamp_min(1), nan) * 100
        total = m.sum()
        return {
            "miou": _nanmean(iou),
            "pixel_acc": float(tp.sum() / total * 100) if total > 0 else math.nan,
            "mean_acc": _nanmean(acc),
            "per_class_iou": iou.tolist(),
            "per_class_acc": acc.tolist(),
            "num_pixels": int(self.matrix.sum()),
        }


def _nanmean(x: torch.Tensor) -> float:
    keep = ~torch.isnan(x)
    return float(x[keep].mean()) if bool(keep.any()) else math.nan


def _fmt(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:.2f}"


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|")  # a '|' in a class or split name would split the markdown cell


def write_seg_report(
    results: dict[str, dict[str, Any]], class_names: Sequence[str], out_dir: str | Path
) -> tuple[Path, Path]:
    """Write ``metrics.json`` and ``metrics.md`` for one or more evaluated splits / conditions.

    Args:
        results: split or condition name (``test``, ``test_day``, ``test_night``, a model name) ->
            :meth:`ConfusionMatrix.compute` output.
        class_names: one name per class, in class-index order.
        out_dir: created if missing.

    Returns:
        (json_path, md_path).
    """
    names = [str(n) for n in class_names]
    if not results:
        raise ConfigError("results is empty: pass {split_name: ConfusionMatrix.compute()} for at least one split.")
    required = ("miou", "pixel_acc", "mean_acc", "per_class_iou")
    for split, res in results.items():
        missing = [k for k in required if k not in res]
        if missing:
            raise ConfigError(f"results[{split!r}] lacks {missing}; pass ConfusionMatrix.compute() output.")
        if len(res["per_class_iou"]) != len(names):
            raise ConfigError(
                f"results[{split!r}] has {len(res['per_class_iou'])} per-class IoUs but {len(names)} class names "
                "were given. Pass one name per class, in class-index order."
            )

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out / "metrics.json", out / "metrics.md"
    payload = {"units": "percent", "class_names": names, "results": json_safe(results)}
    json_path.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")

    splits = list(results)
    lines = [
        "# Segmentation metrics",
        "",
        "All values in percent. – : class absent from both ground truth and prediction (excluded from mIoU).",
        "",
        "| split | mIoU | pixel acc | mean acc | pixels |",
        "|---|---:|---:|---:|---:|",
    ]
    for split in splits:
        r = results[split]
        pixels = r.get("num_pixels", "")
        lines.append(
            f"| {_cell(split)} | {_fmt(r['miou'])} | {_fmt(r['pixel_acc'])} | {_fmt(r['mean_acc'])} | {pixels} |"
        )
    lines += [
        "",
        "## Per-class IoU",
        "",
        "| class | " + " | ".join(_cell(s) for s in splits) + " |",
        "|---|" + "---:|" * len(splits),
    ]
    for k, name in enumerate(names):
        lines.append(f"| {_cell(name)} | " + " | ".join(_fmt(results[s]["per_class_iou"][k]) for s in splits) + " |")
    md_path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return json_path, md_path
