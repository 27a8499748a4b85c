"""Segmentation evaluator: one confusion matrix overall and one per condition (day / night / fog)."""

from __future__ import annotations

from typing import Any

import torch

from .metrics import ConfusionMatrix

CONDITIONS = ("day", "night", "fog")


class SegEvaluator:
    """mIoU, pixel accuracy and per-class IoU of every image processed, overall (``all``) and per condition.

    The engine's evaluator contract (:mod:`ivtune.engine.evaluation`): the state is the matrices' counts, merged by
    summation, so a multi-GPU evaluation equals a single-process one exactly.
    """

    def __init__(self, num_classes: int, ignore_index: int) -> None:
        self.num_classes, self.ignore_index = num_classes, ignore_index
        self.reset()

    def reset(self) -> None:
        self.matrices = {c: ConfusionMatrix(self.num_classes, self.ignore_index) for c in ("all", *CONDITIONS)}

    def process(self, batch: dict[str, Any], outputs: torch.Tensor, keep: list[int]) -> None:
        pred = outputs.argmax(1)
        for i in keep:
            for key in ("all", batch["meta"][i].get("condition")):
                if key in self.matrices:
                    self.matrices[key].update(pred[i: i + 1], batch["mask"][i: i + 1])

    def state(self) -> dict[str, torch.Tensor]:
        return {k: cm.matrix.cpu() for k, cm in self.matrices.items()}

    def merge(self, states: list[dict[str, torch.Tensor]]) -> None:
        for key, cm in self.matrices.items():
            cm.matrix = sum(s[key].to(cm.matrix.device) for s in states)

    def evaluate(self) -> dict[str, dict]:
        return {cond: cm.compute() for cond, cm in self.matrices.items() if int(cm.matrix.sum()) > 0}
