"""ConfusionMatrix against hand-computed values, and the metrics.json / metrics.md report."""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.distributed as dist

from ivtune.errors import ConfigError, InputShapeError
from ivtune.tasks.seg.metrics import ConfusionMatrix, write_seg_report

# 3 classes, ignore 255. (gt, pred) pairs, row by row:
# (0,0) (0,1) (1,1) (1,1) | (2,2) (2,0) (255,2: ignored) (0,0)
TARGET = torch.tensor([[[0, 0, 1, 1], [2, 2, 255, 0]]])
PRED = torch.tensor([[[0, 1, 1, 1], [2, 0, 2, 0]]])
# rows = ground truth, columns = prediction
EXPECTED = torch.tensor([[2, 1, 0],
                         [0, 2, 0],
                         [1, 0, 1]])
# IoU = TP / (row + col - TP): class 0: 2 / (3 + 3 - 2), class 1: 2 / (2 + 3 - 2), class 2: 1 / (2 + 1 - 1)
IOU = [2 / 4, 2 / 3, 1 / 2]
ACC = [2 / 3, 2 / 2, 1 / 2]  # TP / row
PIXEL_ACC = 5 / 7  # 7 labelled pixels, 5 on the diagonal


def _pct(values):
    return [100 * v for v in values]


def test_matches_hand_computed_matrix_and_metrics():
    cm = ConfusionMatrix(3)
    cm.update(PRED, TARGET)
    assert cm.matrix.dtype == torch.int64
    assert torch.equal(cm.matrix, EXPECTED)
    r = cm.compute()
    assert r["per_class_iou"] == pytest.approx(_pct(IOU))
    assert r["miou"] == pytest.approx(100 * 5 / 9)  # (1/2 + 2/3 + 1/2) / 3
    assert r["per_class_acc"] == pytest.approx(_pct(ACC))
    assert r["mean_acc"] == pytest.approx(100 * 13 / 18)  # (2/3 + 1 + 1/2) / 3
    assert r["pixel_acc"] == pytest.approx(100 * PIXEL_ACC)
    assert r["num_pixels"] == 7
    assert set(r) == {"miou", "pixel_acc", "mean_acc", "per_class_iou", "per_class_acc", "num_pixels"}


def test_absent_class_is_nan_and_excluded_from_mean():
    cm = ConfusionMatrix(4)  # class 3 in neither ground truth nor prediction
    cm.update(PRED, TARGET)
    r = cm.compute()
    assert math.isnan(r["per_class_iou"][3]) and math.isnan(r["per_class_acc"][3])
    assert r["per_class_iou"][:3] == pytest.approx(_pct(IOU))
    assert r["miou"] == pytest.approx(100 * 5 / 9)
    assert r["mean_acc"] == pytest.approx(100 * 13 / 18)


def test_class_only_predicted_counts_as_zero():
    cm = ConfusionMatrix(4)
    pred = PRED.clone()
    pred[0, 0, 0] = 3  # a (gt 0, pred 3) false positive: class 3 has union 1, IoU 0
    cm.update(pred, TARGET)
    r = cm.compute()
    assert r["per_class_iou"] == pytest.approx(_pct([1 / 4, 2 / 3, 1 / 2, 0.0]))
    assert r["miou"] == pytest.approx(100 * (1 / 4 + 2 / 3 + 1 / 2 + 0) / 4)
    assert math.isnan(r["per_class_acc"][3])  # not in the ground truth: excluded from mean_acc


def test_merge_of_halves_equals_whole():
    torch.manual_seed(0)
    target = torch.randint(0, 5, (4, 9, 7))
    target[target == 4] = 255
    pred = torch.randint(0, 4, (4, 9, 7))
    whole = ConfusionMatrix(4)
    whole.update(pred, target)
    a, b = ConfusionMatrix(4), ConfusionMatrix(4)
    a.update(pred[:2], target[:2])
    b.update(pred[2:], target[2:])
    assert a.merge(b) is a
    assert torch.equal(a.matrix, whole.matrix)
    assert a.compute() == whole.compute()  # no NaN here: every class occurs
    # accumulating two updates is the same as one
    c = ConfusionMatrix(4)
    c.update(pred[:1], target[:1])
    c.update(pred[1:], target[1:])
    assert torch.equal(c.matrix, whole.matrix)
    with pytest.raises(ConfigError, match="num_classes=5"):
        a.merge(ConfusionMatrix(5))


def test_ignore_pixels_are_skipped_whatever_the_prediction():
    cm = ConfusionMatrix(3)
    cm.update(torch.tensor([[7, 1]]), torch.tensor([[255, 1]]))  # pred 7 is out of range but on an ignored pixel
    assert cm.matrix.sum() == 1 and cm.matrix[1, 1] == 1


def test_out_of_range_and_shape_errors():
    cm = ConfusionMatrix(3)
    with pytest.raises(InputShapeError, match=r"pred has values \[3\]"):
        cm.update(torch.tensor([[3, 0]]), torch.tensor([[0, 0]]))
    with pytest.raises(InputShapeError, match=r"target has values \[-1, 5\]"):
        cm.update(torch.tensor([[0, 0, 0]]), torch.tensor([[5, -1, 0]]))
    with pytest.raises(InputShapeError, match="same shape"):
        cm.update(torch.zeros(1, 3, 2, 2, dtype=torch.long), torch.zeros(1, 2, 2, dtype=torch.long))
    with pytest.raises(InputShapeError, match="integer"):
        cm.update(torch.zeros(1, 2, 2), torch.zeros(1, 2, 2, dtype=torch.long))
    assert cm.matrix.sum() == 0  # nothing was added by a failed update
    with pytest.raises(ConfigError, match="ignore_index=1"):
        ConfusionMatrix(3, ignore_index=1)


def test_empty_matrix_is_nan_not_error():
    r = ConfusionMatrix(2).compute()
    assert math.isnan(r["miou"]) and math.isnan(r["pixel_acc"]) and r["num_pixels"] == 0


def test_all_reduce_noop_and_single_rank_group(tmp_path):
    cm = ConfusionMatrix(3)
    cm.update(PRED, TARGET)
    assert not dist.is_initialized()
    assert torch.equal(cm.all_reduce().matrix, EXPECTED)
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        assert torch.equal(cm.all_reduce().matrix, EXPECTED)  # one rank: the sum is itself
    finally:
        dist.destroy_process_group()


def test_write_seg_report(tmp_path):
    cm = ConfusionMatrix(4)
    cm.update(PRED, TARGET)
    day = cm.compute()
    names = ["unlabeled", "car", "person|rider", "bike"]
    json_path, md_path = write_seg_report({"test_day": day, "test": day}, names, tmp_path / "out")
    assert json_path.name == "metrics.json" and md_path.name == "metrics.md"
    data = json.loads(json_path.read_text())
    assert data["units"] == "percent" and data["class_names"] == names
    assert list(data["results"]) == ["test_day", "test"]
    assert data["results"]["test"]["miou"] == pytest.approx(100 * 5 / 9)
    assert data["results"]["test"]["per_class_iou"][3] is None  # NaN written as null
    md = md_path.read_text()
    assert "| test_day | 55.56 | 71.43 |" in md
    assert "| person\\|rider | 50.00 | 50.00 |" in md
    assert "| bike | – | – |" in md
    with pytest.raises(ConfigError, match="3 class names"):
        write_seg_report({"test": day}, names[:3], tmp_path)
