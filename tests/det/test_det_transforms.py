"""Boxes move with the images under flip, resize and crop (exact coordinates); eval pipeline; collate."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ivtune.data.transforms import PairedTransform
from ivtune.errors import ConfigError
from ivtune.tasks.det.dataset import det_to_tensors
from ivtune.tasks.det.transforms import (
    DetFlip,
    DetRandomCrop,
    DetResize,
    build_det_transforms,
    collate_det,
    crop_boxes,
    resized_shape,
)

H, W = 40, 60


def raw(boxes, labels=None):
    """A raw sample whose images carry a bright rectangle exactly under each box."""
    vis = np.zeros((H, W, 3), np.uint8)
    ir = np.zeros((H, W), np.uint8)
    for x1, y1, x2, y2 in boxes:
        vis[y1:y2, x1:x2] = 255
        ir[y1:y2, x1:x2] = 200
    n = len(boxes)
    return {"vis": vis, "ir": ir, "boxes": np.asarray(boxes, np.float32).reshape(-1, 4),
            "labels": np.arange(n, dtype=np.int64) if labels is None else np.asarray(labels, np.int64),
            "ignore": np.zeros(n, bool), "meta": {"name": "x", "orig_size": (H, W)}}


def test_flip_moves_boxes_and_both_images():
    s = PairedTransform([DetFlip(1.0)], convert=det_to_tensors)(raw([[5, 10, 15, 30]]), rng=0)
    assert s["boxes"].tolist() == [[45.0, 10.0, 55.0, 30.0]]  # x -> W - x
    for key in ("vis", "ir"):
        on = s[key][0].nonzero()
        assert on[:, 1].min() == 45 and on[:, 1].max() == 54 and on[:, 0].min() == 10 and on[:, 0].max() == 29
    assert s["meta"]["flipped"] is True


def test_resize_short_side_and_cap():
    assert resized_shape(40, 60, 80, None) == (80, 120)
    assert resized_shape(40, 60, 80, 90) == (60, 90)  # long side capped at 90
    s = PairedTransform([DetResize((80,), None)], convert=det_to_tensors)(raw([[5, 10, 15, 30]]), rng=0)
    assert s["vis"].shape == (3, 80, 120) and s["ir"].shape == (1, 80, 120)
    assert s["boxes"].tolist() == [[10.0, 20.0, 30.0, 60.0]]
    assert s["meta"]["scale"] == (2.0, 2.0)
    # the bright region lands where the box says (bilinear edges are half-bright)
    col = s["ir"][0, 40]
    assert col[11:29].min() > 0.7 and col[10] > 0.3 and col[29] > 0.3
    assert col[:9].max() < 0.05 and col[31:].max() < 0.05


def test_resize_draws_from_sizes():
    t = PairedTransform([DetResize((20, 40, 80), None)], convert=det_to_tensors)
    shapes = {t(raw([[5, 10, 15, 30]]), rng=k)["vis"].shape[-2] for k in range(30)}
    assert shapes == {20, 40, 80}


def test_crop_shifts_clips_and_drops():
    s = PairedTransform([], convert=det_to_tensors)(
        raw([[5, 10, 15, 30], [30, 5, 50, 20], [0, 0, 4, 4]], labels=[0, 1, 2]), rng=0)
    c = crop_boxes(s, top=8, left=10, h=20, w=30)
    assert c["vis"].shape == (3, 20, 30)
    # box 0: (5,10,15,30) -> shift (-10,-8) -> (-5,2,5,22) -> clipped (0,2,5,20); box 1 -> (20,-3,40,12) -> (20,0,30,12)
    assert c["boxes"].tolist() == [[0.0, 2.0, 5.0, 20.0], [20.0, 0.0, 30.0, 12.0]]
    assert c["labels"].tolist() == [0, 1] and c["ignore"].tolist() == [False, False]  # box 2 lost its area
    assert c["meta"]["crop_offset"] == (8, 10)
    assert torch.equal(c["vis"], s["vis"][:, 8:28, 10:40])


def test_random_crop_keeps_boxes_consistent_with_pixels():
    t = PairedTransform([DetRandomCrop((24, 36))], convert=det_to_tensors)
    for seed in range(5):
        s = t(raw([[5, 10, 15, 30]]), rng=seed)
        assert s["vis"].shape == (3, 24, 36)
        if len(s["boxes"]):
            x1, y1, x2, y2 = (int(v) for v in s["boxes"][0].tolist())
            assert s["ir"][0, y1:y2, x1:x2].min() > 0.7
            assert s["ir"][0].sum() == pytest.approx(s["ir"][0, y1:y2, x1:x2].sum())


def test_train_pipeline_end_to_end():
    t = build_det_transforms(True, sizes=(32, 48), max_size=100, hflip=0.5, crop=(30, 40), ir_channels=3)
    s = t(raw([[5, 10, 15, 30], [30, 5, 50, 20]]), rng=1)
    assert s["vis"].dtype == torch.float32 and s["ir"].shape[0] == 3
    assert s["boxes"].dtype == torch.float32 and s["labels"].dtype == torch.int64 and s["ignore"].dtype == torch.bool
    h, w = s["vis"].shape[-2:]
    assert h <= 30 and w <= 40
    b = s["boxes"]
    assert (b[:, 0] >= 0).all() and (b[:, 2] <= w).all() and (b[:, 3] <= h).all() and (b[:, 2] > b[:, 0]).all()
    assert "scale" in s["meta"]
    again = t(raw([[5, 10, 15, 30], [30, 5, 50, 20]]), rng=1)
    assert torch.equal(again["vis"], s["vis"]) and torch.equal(again["boxes"], s["boxes"])


def test_eval_pipeline_fixed_and_scale_maps_back():
    t = build_det_transforms(False, sizes=(40, 80), max_size=1000, ir_channels=1, ir_norm="unit")
    s = t(raw([[5, 10, 15, 30]]), rng=None)
    assert s["vis"].shape == (3, 80, 120) and s["ir"].shape == (1, 80, 120)
    sy, sx = s["meta"]["scale"]
    assert (s["boxes"] / torch.tensor([sx, sy, sx, sy])).tolist() == [[5.0, 10.0, 15.0, 30.0]]
    assert build_det_transforms(False, sizes=40)(raw([]))["boxes"].shape == (0, 4)


def test_collate_and_errors():
    t = build_det_transforms(False, sizes=40)
    batch = collate_det([t(raw([[5, 10, 15, 30]])), t(raw([]))])
    assert set(batch) == {"vis", "ir", "boxes", "labels", "ignore", "meta"}
    assert [b.shape[0] for b in batch["boxes"]] == [1, 0] and len(batch["meta"]) == 2
    with pytest.raises(ConfigError, match="ir_norm"):
        build_det_transforms(True, ir_norm="zscore")
    with pytest.raises(ConfigError, match="sizes"):
        build_det_transforms(True, sizes=())
