"""Figures: mask colours, overlays, and that every plot writes a PNG that opens."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from ivtune.errors import DataError, InputShapeError
from ivtune.viz import colorize_mask, image_grid, overlay, plot_per_class_iou, plot_training_curves

PALETTE = [(0, 0, 0), (64, 0, 128), (64, 64, 0), (0, 128, 192)]


def _assert_png(path):
    assert path.is_file() and path.stat().st_size > 0
    with Image.open(path) as im:
        im.verify()
    with Image.open(path) as im:
        assert im.format == "PNG" and im.size[0] > 0 and im.size[1] > 0


def test_colorize_maps_each_class_to_its_colour():
    mask = np.array([[0, 1, 2], [3, 255, 1]])
    out = colorize_mask(mask, PALETTE)
    assert out.dtype == np.uint8 and out.shape == (2, 3, 3)
    for (i, j), k in np.ndenumerate(mask):
        assert tuple(out[i, j]) == ((0, 0, 0) if k == 255 else PALETTE[k])
    assert np.array_equal(colorize_mask(torch.from_numpy(mask), np.array(PALETTE)), out)
    with pytest.raises(InputShapeError, match=r"values \[4\]"):
        colorize_mask(np.array([[4]]), PALETTE)


def test_overlay_blends():
    rgb = np.full((2, 3, 3), 200, np.uint8)
    col = colorize_mask(np.array([[1, 1, 1], [0, 0, 0]]), PALETTE)
    out = overlay(rgb, col, alpha=0.5)
    assert out.dtype == np.uint8 and out.shape == (2, 3, 3)
    assert tuple(out[0, 0]) == (132, 100, 164)  # (200 + 64) / 2, (200 + 0) / 2, (200 + 128) / 2
    assert np.array_equal(overlay(rgb, col, alpha=0.0), rgb)
    grey = overlay(np.full((2, 3), 1.0, np.float32), col, alpha=1.0)  # float grey thermal image
    assert np.array_equal(grey, col)
    with pytest.raises(InputShapeError, match="same height and width"):
        overlay(rgb, col[:1])


def test_plot_training_curves(tmp_path):
    csv_path = tmp_path / "metrics.csv"
    csv_path.write_text(
        "epoch,step,train/loss,val/miou,lr-AdamW\n"
        "0,9,1.5,,0.001\n"
        "0,19,1.2,,0.001\n"
        "0,19,,12.5,\n"
        "1,29,0.9,,nan\n"
        "1,39,,20.0,\n"
    )
    _assert_png(plot_training_curves(csv_path, tmp_path / "plots" / "curves.png"))
    empty = tmp_path / "empty.csv"
    empty.write_text("epoch,step\n0,1\n")
    with pytest.raises(DataError, match="no numeric metric columns"):
        plot_training_curves(empty, tmp_path / "x.png")


def test_plot_per_class_iou(tmp_path):
    names = ["unlabeled", "car", "person", "bike"]
    _assert_png(plot_per_class_iou([90.0, 60.0, float("nan"), 10.0], names, tmp_path / "single.png"))
    grouped = {"visible-only": [90.0, 55.0, 40.0, 5.0], "IV-tuning": [92.0, 70.0, 66.0, float("nan")]}
    _assert_png(plot_per_class_iou(grouped, names, tmp_path / "grouped.png"))


def test_image_grid(tmp_path):
    rng = np.random.default_rng(0)
    vis = rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)
    ir = rng.random((24, 32), dtype=np.float32)
    gt = colorize_mask(rng.integers(0, 4, (24, 32)), PALETTE)
    chw = torch.rand(3, 24, 32)
    rows = [[vis, ir, gt, gt, chw], [vis, ir, gt, gt, chw]]
    titles = ["VIS", "IR", "ground truth", "visible-only", "IV-tuning"]
    _assert_png(image_grid(rows, titles, tmp_path / "grid.png"))
