"""COCO AP through pycocotools (perfect and shifted predictions, exact values), the MR^-2 of COCO results under
the named protocols by hand, and the report with miss-rate rows."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest

from ivtune.errors import ConfigError
from ivtune.tasks.det.datasets import build_det_dataset
from ivtune.tasks.det.kaist import PROTOCOLS
from ivtune.tasks.det.metrics import (
    coco_evaluate,
    kaist_miss_rate,
    miss_rate_rows,
    plot_pr_curves,
    write_det_report,
)


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


def kaist_example(offset: float = 0.0):
    """The hand-worked example, as COCO ground truth + results (every box shifted by ``offset`` pixels)."""
    gts = [
        # A: g1 tall person; g2 only 40 px tall -> an ignore region in the reasonable settings
        [([0, 0, 40, 100], 0), ([100, 0, 120, 40], 0)],
        # B: g3 person; g4 flagged ignore region (people / person? / cyclist)
        [([0, 0, 40, 100], 0), ([200, 0, 300, 100], 1)],
        # C: g5 person, never detected
        [([0, 0, 50, 120], 0)],
    ]
    dets = [
        # d7 on g2 (inter 800 / det area 900 >= 0.5); d1 on g1; d6 a duplicate of g1; d8 only 30 px tall
        ([[100, 0, 120, 45], [0, 0, 40, 100], [2, 0, 42, 100], [300, 300, 310, 330]], [0.95, 0.9, 0.85, 0.5]),
        # d4 inside the ignore region: IoU 0.32 but intersection / det area = 1 -> discarded; d3 on g3; d5 nothing
        ([[210, 10, 250, 90], [0, 0, 40, 100], [400, 0, 440, 100]], [0.8, 0.7, 0.6]),
        ([], []),
    ]

    def xywh(b):
        return [b[0] + offset, b[1] + offset, b[2] - b[0], b[3] - b[1]]

    coco = {"images": [{"id": i + 1, "width": 640, "height": 512, "condition": c}
                       for i, c in enumerate(("day", "day", "night"))],
            "annotations": [{"id": 10 * i + k + 1, "image_id": i + 1, "category_id": 1, "bbox": xywh(b),
                             "iscrowd": crowd} for i, img in enumerate(gts) for k, (b, crowd) in enumerate(img)],
            "categories": [{"id": 1, "name": "person"}]}
    results = [{"image_id": i + 1, "category_id": 1, "bbox": xywh(b), "score": sc}
               for i, (boxes, scores) in enumerate(dets) for b, sc in zip(boxes, scores, strict=True)]
    return coco, results


def test_kaist_miss_rate_caltech_reasonable_by_hand():
    gt, dets = kaist_example()
    r = kaist_miss_rate(gt, dets, "caltech-reasonable")
    # targets g1, g3, g5 (3); 3 images; d8 removed (30 < 50 / 1.25); d7 and d4 land on ignore regions.
    # kept by score: d1 TP, d6 FP, d3 TP, d5 FP -> (fppi, miss) = (0, 2/3), (1/3, 2/3), (1/3, 1/3), (2/3, 1/3)
    # the 7 reference points below 1/3 read miss 2/3 (the point at fppi 0); 0.562 and 1.0 read 1/3
    assert r["num_targets"] == 3 and r["num_images"] == 3 and r["protocol"] == "caltech-reasonable"
    assert r["num_detections"] == 4 and r["num_ignored_detections"] == 2 and r["num_dropped_detections"] == 1
    expected = math.exp((7 * math.log(2 / 3) + 2 * math.log(1 / 3)) / 9) * 100
    assert r["mr2"] == pytest.approx(expected)  # 57.15 %
    assert list(r["miss_rate_at"].values()) == pytest.approx([200 / 3] * 7 + [100 / 3] * 2)
    np.testing.assert_allclose(r["fppi"], [0, 0, 1 / 3, 1 / 3, 2 / 3])
    np.testing.assert_allclose(r["miss_curve"], [1, 2 / 3, 2 / 3, 1 / 3, 1 / 3])
    assert list(r["miss_rate_at"]) == pytest.approx(list(np.logspace(-2, 0, 9)))
    # per condition, FPPI over each subset's own images: day (A, B) has g1, g3 and d1 TP, d6 FP, d3 TP, d5 FP over
    # 2 images -> (0, 1/2), (1/2, 1/2), (1/2, 0), (1, 0); night (C) misses g5 with no detection: 100 %
    day = math.exp((7 * math.log(1 / 2) + 2 * math.log(1e-10)) / 9) * 100
    assert r["miss_rate"] == pytest.approx({"all": expected, "day": day, "night": 100.0})


def test_kaist_miss_rate_without_height_rule_by_hand():
    gt, dets = kaist_example()
    no_height = dataclasses.replace(PROTOCOLS["caltech-reasonable"], name="no-height", min_height=0.0,
                                    det_min_height_ratio=None)
    r = kaist_miss_rate(gt, dets, no_height)
    # g2 is now a target (4 targets), d7 matches it, d8 is kept and false.
    # kept: d7 TP, d1 TP, d6 FP, d3 TP, d5 FP, d8 FP -> miss 1/2 at fppi 0, 1/4 from fppi 1/3 on
    assert r["num_targets"] == 4 and r["num_ignored_detections"] == 1
    assert r["mr2"] == pytest.approx(2 ** (-11 / 9) * 100)


def test_kaist_miss_rate_kaist_protocol_border_and_short_detections():
    # every box of the example starts at x = 0 or y = 0: all cross KAIST's 5 px border, so nothing is a target
    gt, dets = kaist_example()
    r = kaist_miss_rate(gt, dets)  # default kaist-reasonable
    assert r["protocol"] == "kaist-reasonable" and r["num_targets"] == 0 and r["mr2"] is None
    # moved 100 px into the frame: the same 3 targets as Caltech's, but d8 (30 px) is kept, a false positive at
    # FPPI 1, which leaves the 9 sampled miss rates, hence MR^-2, unchanged
    gt, dets = kaist_example(offset=100)
    r = kaist_miss_rate(gt, dets)
    assert (r["num_targets"], r["num_detections"], r["num_dropped_detections"]) == (3, 5, 0)
    assert r["mr2"] == pytest.approx(math.exp((7 * math.log(2 / 3) + 2 * math.log(1 / 3)) / 9) * 100)
    # the ground truth names its protocol (the KAIST dataset's data.kaist_protocol); an argument overrides it
    assert kaist_miss_rate({**gt, "miss_rate_protocol": "kaist-all"}, dets)["protocol"] == "kaist-all"


def test_kaist_miss_rate_reads_the_raw_kaist_fields():
    gt = {"images": [{"id": 5, "width": 640, "height": 512}],
          "annotations": [
              # iscrowd (training ignore) but kaist_ignore 0 and tall enough: a target for the protocol
              {"id": 1, "image_id": 5, "category_id": 1, "bbox": [100, 100, 40, 100], "iscrowd": 1,
               "kaist_category": "person", "height": 100, "occlusion": 0, "kaist_ignore": 0},
              # KAIST label people, exported as category person: an ignore region
              {"id": 2, "image_id": 5, "category_id": 1, "bbox": [300, 100, 40, 100], "iscrowd": 1,
               "kaist_category": "people", "height": 100, "occlusion": 0, "kaist_ignore": 0},
              # annotated height 50 (< 55) although the clipped box is 100 tall: an ignore region
              {"id": 3, "image_id": 5, "category_id": 1, "bbox": [500, 100, 40, 100], "iscrowd": 0,
               "kaist_category": "person", "height": 50, "occlusion": 0, "kaist_ignore": 0}],
          "categories": [{"id": 1, "name": "person"}]}
    r = kaist_miss_rate(gt, [{"image_id": 5, "category_id": 1, "bbox": [100, 100, 40, 100], "score": 0.9},
                             {"image_id": 5, "category_id": 1, "bbox": [300, 100, 40, 100], "score": 0.8}])
    assert (r["num_targets"], r["num_detections"], r["num_ignored_detections"]) == (1, 1, 1)
    assert r["mr2"] == pytest.approx(1e-10 * 100)


def test_kaist_perfect_empty_and_bad_input():
    gt = {"images": [{"id": 1}, {"id": 2}],
          "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [10, 10, 30, 80]},
                          {"id": 2, "image_id": 2, "category_id": 1, "bbox": [20, 20, 30, 80]}],
          "categories": [{"id": 1, "name": "person"}]}
    perfect_dets = [{"image_id": a["image_id"], "category_id": 1, "bbox": a["bbox"], "score": 1.0}
                    for a in gt["annotations"]]
    r = kaist_miss_rate(gt, perfect_dets, "caltech-reasonable")
    assert r["mr2"] == pytest.approx(1e-10 * 100)  # miss 0 everywhere, floored at 1e-10 like the devkit
    assert kaist_miss_rate(gt, [], "caltech-reasonable")["mr2"] == pytest.approx(100)
    with pytest.raises(ConfigError, match="log_average_miss_rate"):
        kaist_miss_rate([{"boxes": [[0, 0, 1, 1]]}], [{"boxes": [], "scores": []}])
    with pytest.raises(ConfigError, match="exactly one category named 'person'"):
        kaist_miss_rate({**gt, "categories": [{"id": 1, "name": "car"}]}, [])


def test_report_with_miss_rate_rows(tmp_path):
    gt, dets = kaist_example(offset=100)
    r = kaist_miss_rate(gt, dets)
    rows = miss_rate_rows(r)
    assert set(rows) == {"all", "day", "night"} and "by_condition" not in rows["all"]
    assert rows["night"]["protocol"] == "kaist-reasonable" and rows["night"]["mr2"] == pytest.approx(100)
    coco = coco_evaluate(gt, dets)
    j, md = write_det_report({"all": {**coco, "kaist": rows["all"]}, "night": {"kaist": rows["night"]}},
                             ["person"], tmp_path)
    payload = json.loads(j.read_text())["results"]
    assert payload["all"]["kaist"]["mr2"] == pytest.approx(r["mr2"]) and "fppi" not in payload["all"]["kaist"]
    assert payload["all"]["kaist"]["miss_rate"]["night"] == pytest.approx(100)
    text = md.read_text()
    assert f"| all | kaist-reasonable | {r['mr2']:.2f} | 3 | 3 | 5 | 2 |" in text
    assert "| night | kaist-reasonable | 100.00 | 1 | 1 | 0 | – |" in text
    assert "exact points np.logspace(-2, 0, 9)" in text and "fully inside [5, 5, 635, 507]" in text
