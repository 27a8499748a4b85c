"""COCO AP through pycocotools (perfect and shifted predictions, exact values) and the KAIST MR^-2 by hand."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from ivtune.tasks.det.datasets import build_det_dataset
from ivtune.tasks.det.metrics import FPPI_POINTS, coco_evaluate, kaist_miss_rate, plot_pr_curves, write_det_report


def gt_dict():
    # person boxes 100x100 (area 10000 > 96^2: "large"); one car 30x30 (area 900 < 32^2: "small")
    return {
        "images": [{"id": 1, "width": 200, "height": 200}, {"id": 2, "width": 200, "height": 200}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 100, 100], "area": 10000, "iscrowd": 0},
            {"id": 2, "image_id": 2, "category_id": 1, "bbox": [10, 10, 100, 100], "area": 10000, "iscrowd": 0},
            {"id": 3, "image_id": 1, "category_id": 2, "bbox": [120, 120, 30, 30], "area": 900, "iscrowd": 0},
        ],
        "categories": [{"id": 1, "name": "person"}, {"id": 2, "name": "car"}],
    }


def perfect(gt):
    return [{"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"], "score": 1.0}
            for a in gt["annotations"]]


def test_coco_perfect_is_100():
    r = coco_evaluate(gt_dict(), perfect(gt_dict()))
    assert r["mAP"] == pytest.approx(100) and r["AP50"] == pytest.approx(100) and r["AP75"] == pytest.approx(100)
    assert r["AP_small"] == pytest.approx(100) and r["AP_large"] == pytest.approx(100) and r["AP_medium"] is None
    assert r["per_class_AP"] == pytest.approx({"person": 100.0, "car": 100.0})
    assert r["precision"].shape == (10, 101, 2)


def test_coco_perfect_on_dataset_export():
    ds = build_det_dataset("synthetic", None, "val", num_samples=3, height=64, width=80)
    gt = ds.to_coco()
    assert [c["name"] for c in gt["categories"]] == ["person", "car", "bike"]
    r = coco_evaluate(gt, perfect(gt))
    assert r["mAP"] == pytest.approx(100)


def test_coco_shifted_exact():
    gt = gt_dict()
    dets = perfect(gt)
    dets[0]["score"] = 0.9
    # image 2's person shifted 10 px right: IoU = 90*100 / (2*10000 - 9000) = 0.818, a match at IoU 0.50 ... 0.80
    # (7 thresholds), a false positive at 0.85, 0.90, 0.95
    dets[1] = dict(dets[1], bbox=[20, 10, 100, 100], score=0.8)
    r = coco_evaluate(gt, dets)
    # at the 3 strict thresholds: TP (recall 0.5, precision 1) then FP -> precision 1 at the 51 recall points
    # 0.00 ... 0.50 and 0 beyond: AP = 51 / 101
    person = (7 * 1.0 + 3 * 51 / 101) / 10 * 100
    assert r["per_class_AP"]["person"] == pytest.approx(person)  # 85.1485...
    assert r["per_class_AP"]["car"] == pytest.approx(100)
    assert r["mAP"] == pytest.approx((person + 100) / 2)
    assert r["AP50"] == pytest.approx(100) and r["AP75"] == pytest.approx(100)
    assert r["AP_large"] == pytest.approx(person) and r["AP_small"] == pytest.approx(100)
    assert r["per_class_AP50"]["person"] == pytest.approx(100)


def test_coco_no_detections():
    r = coco_evaluate(gt_dict(), [])
    assert r["mAP"] == 0.0 and r["per_class_AP"]["person"] == 0.0


def test_report_and_plot(tmp_path):
    gt = gt_dict()
    r = coco_evaluate(gt, perfect(gt))
    j, md = write_det_report({"test": r}, ["person", "car"], tmp_path / "rep")
    payload = json.loads(j.read_text())
    assert payload["results"]["test"]["mAP"] == pytest.approx(100)
    assert len(payload["results"]["test"]["pr_curve_iou50"]["person"]) == 101
    text = md.read_text()
    assert "| person | 100.00 / 100.00 |" in text and "| test | 100.00 | 100.00 | 100.00 |" in text
    png = plot_pr_curves(r, ["person", "car"], tmp_path / "rep" / "pr.png")
    assert png.stat().st_size > 1000


def kaist_example():
    gts = [
        # A: g1 tall person; g2 only 40 px tall -> an ignore region in the reasonable setting
        {"boxes": [[0, 0, 40, 100], [100, 0, 120, 40]], "ignore": [False, False]},
        # B: g3 person; g4 flagged ignore region (people / person? / cyclist)
        {"boxes": [[0, 0, 40, 100], [200, 0, 300, 100]], "ignore": [False, True]},
        # C: g5 person, never detected
        {"boxes": [[0, 0, 50, 120]], "ignore": [False]},
    ]
    dets = [
        # d7 on g2 (inter 800 / det area 900 >= 0.5); d1 on g1; d6 a duplicate of g1; d8 only 30 px tall
        {"boxes": [[100, 0, 120, 45], [0, 0, 40, 100], [2, 0, 42, 100], [300, 300, 310, 330]],
         "scores": [0.95, 0.9, 0.85, 0.5]},
        # d4 inside the ignore region: IoU 0.32 but intersection / det area = 1 -> discarded; d3 on g3; d5 nothing
        {"boxes": [[210, 10, 250, 90], [0, 0, 40, 100], [400, 0, 440, 100]], "scores": [0.8, 0.7, 0.6]},
        {"boxes": np.zeros((0, 4)), "scores": []},
    ]
    return gts, dets


def test_kaist_miss_rate_reasonable_by_hand():
    gts, dets = kaist_example()
    r = kaist_miss_rate(gts, dets, "reasonable")
    # targets g1, g3, g5 (3); 3 images; d8 removed (30 < 50 / 1.25); d7 and d4 land on ignore regions.
    # kept by score: d1 TP, d6 FP, d3 TP, d5 FP -> (fppi, miss) = (0, 2/3), (1/3, 2/3), (1/3, 1/3), (2/3, 1/3)
    # the 7 reference points below 1/3 read miss 2/3 (the point at fppi 0); 0.562 and 1.0 read 1/3
    assert r["num_targets"] == 3 and r["num_images"] == 3
    assert r["num_detections"] == 4 and r["num_ignored_detections"] == 2
    expected = math.exp((7 * math.log(2 / 3) + 2 * math.log(1 / 3)) / 9) * 100
    assert r["mr2"] == pytest.approx(expected)  # 57.15 %
    assert list(r["miss_rate_at"].values()) == pytest.approx([200 / 3] * 7 + [100 / 3] * 2)
    np.testing.assert_allclose(r["fppi"], [0, 0, 1 / 3, 1 / 3, 2 / 3])
    np.testing.assert_allclose(r["miss_rate"], [1, 2 / 3, 2 / 3, 1 / 3, 1 / 3])
    assert len(FPPI_POINTS) == 9 and FPPI_POINTS[0] == pytest.approx(0.01) and FPPI_POINTS[-1] == pytest.approx(1)


def test_kaist_miss_rate_all_by_hand():
    gts, dets = kaist_example()
    r = kaist_miss_rate(gts, dets, "all")
    # g2 is now a target (4 targets), d7 matches it, d8 is kept and false.
    # kept: d7 TP, d1 TP, d6 FP, d3 TP, d5 FP, d8 FP -> miss 1/2 at fppi 0, 1/4 from fppi 1/3 on
    assert r["num_targets"] == 4 and r["num_ignored_detections"] == 1
    assert r["mr2"] == pytest.approx(2 ** (-11 / 9) * 100)


def test_kaist_perfect_and_empty():
    gts = [{"boxes": [[0, 0, 30, 80]]}, {"boxes": [[10, 10, 40, 90]]}]
    r = kaist_miss_rate(gts, [{"boxes": g["boxes"], "scores": [1.0]} for g in gts])
    assert r["mr2"] == pytest.approx(1e-10 * 100)  # miss 0 everywhere, floored at 1e-10 like the devkit
    r = kaist_miss_rate(gts, [{"boxes": [], "scores": []}] * 2)
    assert r["mr2"] == pytest.approx(100)
