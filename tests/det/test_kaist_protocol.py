"""KAIST / Caltech MR^-2 protocols: each rule on a worked example, a hand-computed set, a randomised comparison with
a plain re-implementation of Dollár's procedure, and the KAIST file readers (round trips and every bad input)."""

from __future__ import annotations

import dataclasses
import json
import math
import random

import numpy as np
import pytest

from ivtune.errors import ConfigError, DataError
from ivtune.tasks.det.kaist import PROTOCOLS, apply_protocol, get_protocol, log_average_miss_rate, match_detections
from ivtune.tasks.det.kaist_files import (
    kaist_condition,
    read_coco_results,
    read_kaist_annotations,
    read_kaist_txt,
    score_kaist,
)

FLOOR = 1e-10 * 100  # MR^-2 when the miss rate is 0 at every reference point (log floor 1e-10), in percent


def gmean(values):
    return math.exp(sum(math.log(max(v, 1e-10)) for v in values) / len(values)) * 100


def none():
    return {"boxes": np.zeros((0, 4)), "scores": []}


# ------------------------------------------------------------------------------------------------ protocols
def test_registry_and_defaults():
    assert list(PROTOCOLS) == ["kaist-reasonable", "kaist-all", "caltech-reasonable"]
    r, a, c = (PROTOCOLS[k] for k in PROTOCOLS)
    assert (r.min_height, r.max_occlusion, r.border, r.det_min_height_ratio) == (55, 1, (5, 5, 635, 507), None)
    assert (a.min_height, a.max_occlusion, a.border, a.det_min_height_ratio) == (20, None, (5, 5, 635, 507), None)
    assert (c.min_height, c.max_occlusion, c.border, c.det_min_height_ratio) == (50, 1, None, 0.8)
    assert r.iou == a.iou == c.iou == 0.5 and r.labels == ("person",) and r.label_ids == (1,)
    np.testing.assert_array_equal(r.fppi_points(), np.logspace(-2, 0, 9))
    assert r.fppi_points(4)[2] == 0.0316 and r.fppi_points()[2] == pytest.approx(10 ** -1.5, rel=1e-15)
    assert "height >= 55 px" in r.describe() and "no border rule" in c.describe() and "40 px removed" in c.describe()
    out = log_average_miss_rate([{"boxes": [[100, 100, 140, 200]]}], [none()])
    assert out["protocol"] == "kaist-reasonable"


def test_unknown_protocol_lists_the_valid_ones():
    with pytest.raises(ConfigError, match="kaist-reasonable, kaist-all, caltech-reasonable"):
        get_protocol("kaist")
    with pytest.raises(ConfigError, match="min_height"):
        dataclasses.replace(PROTOCOLS["kaist-reasonable"], min_height=float("nan"))
    with pytest.raises(ConfigError, match="border"):
        dataclasses.replace(PROTOCOLS["kaist-reasonable"], border=(5, 5, 5, 507))


# ------------------------------------------------------------------------------------------------ one rule each
def test_54px_person_ignored_by_kaist_but_target_for_caltech():
    gt = [{"boxes": [[100, 100, 130, 154], [300, 100, 340, 200]]}]  # heights 54 and 100
    dets = [{"boxes": [[100, 100, 130, 154]], "scores": [0.9]}]  # exactly on the 54 px person
    k = log_average_miss_rate(gt, dets, "kaist-reasonable")
    # KAIST: the 54 px box is an ignore region that absorbs the detection; the 100 px person is missed
    assert (k["num_targets"], k["num_detections"], k["num_ignored_detections"]) == (1, 0, 1)
    assert k["mr2"] == pytest.approx(100)
    c = log_average_miss_rate(gt, dets, "caltech-reasonable")
    # Caltech (>= 50 px): 2 targets, one found at FPPI 0 -> miss 1/2 at every reference point
    assert (c["num_targets"], c["num_detections"], c["num_ignored_detections"]) == (2, 1, 0)
    assert c["mr2"] == pytest.approx(50)


def test_border_rule():
    gt = {"boxes": [[2, 100, 42, 200],       # x1 = 2 < 5: crosses
                    [5, 5, 45, 105],          # touches x0 = y0 = 5: inside
                    [595, 407, 635, 507],     # touches x1 = 635, y1 = 507: inside
                    [600, 410, 640, 510],     # x2 > 635: crosses
                    [300, 420, 340, 508]]}    # y2 = 508 > 507: crosses
    _, ign = apply_protocol(gt, "kaist-reasonable")
    np.testing.assert_array_equal(ign, [True, False, False, True, True])
    _, ign = apply_protocol(gt, "kaist-all")
    np.testing.assert_array_equal(ign, [True, False, False, True, True])
    _, ign = apply_protocol(gt, "caltech-reasonable")
    np.testing.assert_array_equal(ign, [False] * 5)
    # a 1280x1024 image keeps the 5 px margins: border (5, 5, 1275, 1019)
    _, ign = apply_protocol({**gt, "image_size": (1024, 1280)}, "kaist-reasonable")
    np.testing.assert_array_equal(ign, [True, False, False, False, False])
    # scored: the crossing person is an ignore region, so a detection on it is neither TP nor FP
    r = log_average_miss_rate([{"boxes": [[2, 100, 42, 200], [300, 100, 340, 200]]}],
                              [{"boxes": [[2, 100, 42, 200], [300, 100, 340, 200]], "scores": [0.9, 0.8]}])
    assert (r["num_targets"], r["num_detections"], r["num_ignored_detections"]) == (1, 1, 1)
    assert r["mr2"] == pytest.approx(FLOOR)


def test_labels_occlusion_ignore_flag_and_heights():
    gt = {"boxes": [[100, 100, 140, 200]] * 7,
          "labels": ["person", "people", "cyclist", "person?", 1, 3, "person"],
          "occlusion": [0, 0, 0, 0, 1, 0, 2],
          "ignore": [0, 0, 0, 0, 0, 0, 0]}
    _, ign = apply_protocol(gt, "kaist-reasonable")
    np.testing.assert_array_equal(ign, [False, True, True, True, False, True, True])  # heavy occlusion ignored
    _, ign = apply_protocol(gt, "kaist-all")
    np.testing.assert_array_equal(ign, [False, True, True, True, False, True, False])  # any occlusion is a target
    _, ign = apply_protocol({**gt, "ignore": [1, 0, 0, 0, 0, 0, 0]}, "kaist-all")
    assert ign[0]
    # the given height wins over the box height (the KAIST json's "height")
    _, ign = apply_protocol({"boxes": [[100, 100, 140, 200]] * 2, "heights": [54, 55]}, "kaist-reasonable")
    np.testing.assert_array_equal(ign, [True, False])
    # kaist-all: >= 20 px
    _, ign = apply_protocol({"boxes": [[100, 100, 110, 119], [100, 100, 110, 120]]}, "kaist-all")
    np.testing.assert_array_equal(ign, [True, False])


def test_short_detection_kept_by_kaist_dropped_by_caltech():
    gt = [{"boxes": [[300, 100, 340, 200]]}]
    dets = [{"boxes": [[100, 100, 114, 135], [300, 100, 340, 200]], "scores": [0.95, 0.9]}]  # 35 px false positive
    k = log_average_miss_rate(gt, dets, "kaist-reasonable")
    # KAIST keeps it: FP at FPPI 1 before the TP -> curve (0, 1), (1, 1), (1, 0); references < 1 read miss 1,
    # the reference 1 reads 0 (floored at 1e-10): MR = (1e-10)^(1/9)
    assert (k["num_detections"], k["num_dropped_detections"]) == (2, 0)
    np.testing.assert_allclose(k["fppi"], [0, 1, 1])
    np.testing.assert_allclose(k["miss_curve"], [1, 1, 0])
    assert k["mr2"] == pytest.approx(10 ** (-10 / 9) * 100)  # 7.74 %
    c = log_average_miss_rate(gt, dets, "caltech-reasonable")
    # Caltech drops it (35 < 50 / 1.25 = 40): only the TP is left
    assert (c["num_detections"], c["num_dropped_detections"]) == (1, 1)
    assert c["mr2"] == pytest.approx(FLOOR)


def test_image_with_targets_and_no_detections_counts_its_misses():
    gt = [{"boxes": [[100, 100, 140, 200]]}, {"boxes": [[300, 100, 340, 200]]}]
    dets = [{"boxes": [[100, 100, 140, 200]], "scores": [0.9]}, none()]
    r = log_average_miss_rate(gt, dets)
    # 2 targets, 1 found: miss 1/2 everywhere (MLPD's script drops image 2's target and reports ~0)
    assert r["num_targets"] == 2 and r["mr2"] == pytest.approx(50)


def test_unsorted_detections_are_matched_by_score():
    gt = [{"boxes": [[100, 100, 140, 200]]}, {"boxes": []}]
    # given low score first: 0.3 has IoU 0.9 with the target, 0.9 has IoU 0.6
    dets = [{"boxes": [[100, 100, 140, 190], [100, 100, 140, 160]], "scores": [0.3, 0.9]}, none()]
    r = log_average_miss_rate(gt, dets)
    # by score: 0.9 takes the target (TP), 0.3 is a duplicate (FP): (0, 1), (0, 0), (1/2, 0) -> miss 0 everywhere.
    # In file order 0.9 would be the FP at FPPI 1/2 first and MR 10^(-20/9) = 0.6 %.
    np.testing.assert_allclose(r["fppi"], [0, 0, 0.5])
    np.testing.assert_allclose(r["miss_curve"], [1, 0, 0])
    assert r["mr2"] == pytest.approx(FLOOR)
    scores, outcome = match_detections(np.array([[100, 100, 140, 190], [100, 100, 140, 160.0]]), np.array([0.3, 0.9]),
                                       np.array([[100, 100, 140, 200.0]]), np.array([False]))
    np.testing.assert_array_equal(scores, [0.9, 0.3])
    np.testing.assert_array_equal(outcome, [1, 0])


def test_thresholds_are_inclusive_and_targets_come_first():
    gt_boxes = np.array([[100, 100, 140, 200], [300, 150, 400, 300], [500, 100, 540, 200]], np.float64)
    gt_ignore = np.array([False, True, True])
    dets = np.array([[100, 100, 140, 150],    # IoU 2000 / 4000 = 0.5 exactly with the target: TP
                     [300, 100, 340, 200],    # intersection / own area 2000 / 4000 = 0.5 with the region: absorbed
                     [100, 100, 140, 200],    # the target is taken; IoU 0 elsewhere: FP
                     [500, 100, 540, 200]])   # inside the third (ignore) region: absorbed
    _, outcome = match_detections(dets, np.array([0.9, 0.8, 0.7, 0.6]), gt_boxes, gt_ignore)
    np.testing.assert_array_equal(outcome, [1, -1, 0, -1])
    # a detection covering a target (IoU 0.6) and lying inside an ignore region goes to the target
    _, outcome = match_detections(np.array([[100, 100, 140, 160.0]]), np.array([0.5]),
                                  np.array([[100, 100, 140, 200], [90, 90, 200, 300.0]]), np.array([False, True]))
    np.testing.assert_array_equal(outcome, [1])


def test_no_curve_point_below_a_reference_reads_miss_one():
    gt = [{"boxes": [[100, 100, 140, 200]]}, {"boxes": [[300, 100, 340, 200]]}]
    dets = [{"boxes": [[400, 100, 440, 200], [100, 100, 140, 200]], "scores": [0.9, 0.8]},
            {"boxes": [[300, 100, 340, 200]], "scores": [0.7]}]
    r = log_average_miss_rate(gt, dets)
    # FP first: (0, 1), (1/2, 1), (1/2, 1/2), (1/2, 0). The 7 references below 1/2 have only the start (0, 1) at or
    # below them -> miss 1 (MLPD's script reads the final recall there, miss 0); 0.562 and 1 read 0.
    assert list(r["miss_rate_at"].values()) == pytest.approx([100] * 7 + [0, 0])
    assert r["mr2"] == pytest.approx(10 ** (-20 / 9) * 100)  # 0.599 %


def test_fppi_decimals_reproduces_the_rounded_sampling():
    # 249 images, 14 FPs above the one TP: the TP point sits at FPPI 14/249 = 0.056225, between MLPD's rounded
    # 0.0562 and the exact 10^-1.25 = 0.0562341.
    gt = [{"boxes": [[100, 100, 140, 200]]}] + [{"boxes": []}] * 248
    dets = [{"boxes": [[400, 100, 440, 200]] * 14 + [[100, 100, 140, 200]], "scores": [0.9] * 14 + [0.1]}]
    dets += [none()] * 248
    exact = log_average_miss_rate(gt, dets)
    # exact: refs 0.01, 0.0178, 0.0316 miss 1; the 6 from 0.0562341 on read the TP point (miss 0)
    assert exact["mr2"] == pytest.approx(10 ** (-60 / 9) * 100)
    rounded = log_average_miss_rate(gt, dets, fppi_decimals=4)
    # rounded: 0.0562 < 14/249 still reads the 13th FP (miss 1): 5 zeros
    assert rounded["mr2"] == pytest.approx(10 ** (-50 / 9) * 100)
    assert list(rounded["miss_rate_at"])[3] == 0.0562


# ------------------------------------------------------------------------------------------------ a set by hand
def hand_set():
    """4 images of 640x512: day, day, night, night."""
    gts = [
        # g0 target; g1 50 px (ignored by KAIST's 55, a target for Caltech); g2 "people" region
        {"boxes": [[100, 100, 140, 200], [300, 100, 320, 150], [400, 100, 480, 200]],
         "labels": ["person", "person", "people"], "occlusion": [0, 0, 0]},
        # g3 heavily occluded (a target only for kaist-all); g4 target
        {"boxes": [[200, 200, 240, 300], [500, 300, 540, 400]], "labels": ["person", "person"], "occlusion": [2, 1]},
        # g5 crosses the left border (x1 = 0); g6, g7 targets
        {"boxes": [[0, 100, 40, 200], [300, 300, 340, 400], [100, 300, 140, 400]]},
        # g8 target, never detected
        {"boxes": [[250, 250, 290, 350]]},
    ]
    dets = [
        # d0 on g0 (IoU 3800 / 4200 = 0.905); d1 exactly on g1; d2 inside the people region (ioa 1)
        {"boxes": [[102, 100, 142, 200], [300, 100, 320, 150], [410, 110, 450, 190]], "scores": [0.95, 0.9, 0.6]},
        # d3 on g3; d4 on nothing; d5 on g4 (given in unsorted order)
        {"boxes": [[500, 300, 540, 400], [200, 200, 240, 300], [50, 50, 90, 150]], "scores": [0.4, 0.8, 0.7]},
        # d6 on g6; d7 a 35 px false positive
        {"boxes": [[300, 300, 340, 400], [600, 50, 630, 85]], "scores": [0.85, 0.5]},
        none(),
    ]
    return gts, dets, ["day", "day", "night", "night"]


def test_hand_set_kaist_reasonable():
    gts, dets, cond = hand_set()
    r = log_average_miss_rate(gts, dets, "kaist-reasonable", cond)
    # targets g0 g4 g6 g7 g8 (5); d1, d3 (on ignored g1, g3) and d2 discarded; d7 kept (no detection filter).
    # By score: d0 TP .95, d6 TP .85, d4 FP .7, d7 FP .5, d5 TP .4 ->
    # (0, 1) (0, 4/5) (0, 3/5) (1/4, 3/5) (2/4, 3/5) (2/4, 2/5): refs <= 0.3162 read 3/5 (7), 0.5623 and 1 read 2/5
    assert (r["num_images"], r["num_targets"], r["num_detections"], r["num_ignored_detections"]) == (4, 5, 5, 3)
    np.testing.assert_allclose(r["fppi"], [0, 0, 0, 0.25, 0.5, 0.5])
    np.testing.assert_allclose(r["miss_curve"], [1, 0.8, 0.6, 0.6, 0.6, 0.4])
    assert r["mr2"] == pytest.approx(gmean([0.6] * 7 + [0.4] * 2), rel=1e-12)  # 54.61 %
    # day (images 0, 1; g0 g4): d0 TP, d4 FP, d5 TP -> (0, 1/2) (1/2, 1/2) (1/2, 0): 7 x 1/2, 2 x 0
    assert r["miss_rate"]["day"] == pytest.approx(gmean([0.5] * 7 + [0] * 2), rel=1e-12)  # 0.31 %
    # night (images 2, 3; g6 g7 g8): d6 TP, d7 FP -> (0, 2/3) (1/2, 2/3): 2/3 everywhere
    assert r["miss_rate"]["night"] == pytest.approx(200 / 3, rel=1e-12)
    assert r["miss_rate"]["all"] == r["mr2"]
    assert r["by_condition"]["night"]["num_targets"] == 3 and r["by_condition"]["day"]["num_images"] == 2


def test_hand_set_caltech_reasonable_and_kaist_all():
    gts, dets, _ = hand_set()
    c = log_average_miss_rate(gts, dets, "caltech-reasonable")
    # targets g0 g1 g4 g5 g6 g7 g8 (7); d7 dropped (35 < 40); d2, d3 discarded.
    # d0 TP .95, d1 TP .9, d6 TP .85, d4 FP .7, d5 TP .4 -> (0, 4/7) then (1/4, 4/7) (1/4, 3/7): 6 x 4/7, 3 x 3/7
    assert (c["num_targets"], c["num_detections"], c["num_dropped_detections"]) == (7, 5, 1)
    assert c["mr2"] == pytest.approx(gmean([4 / 7] * 6 + [3 / 7] * 3), rel=1e-12)
    a = log_average_miss_rate(gts, dets, "kaist-all")
    # targets g0 g1 g3 g4 g6 g7 g8 (7; g5 crosses the border); only d2 discarded.
    # d0 d1 d6 d3 TP (.95 .9 .85 .8) -> (0, 3/7); d4 FP (1/4), d7 FP (2/4), d5 TP (2/4, 2/7): 7 x 3/7, 2 x 2/7
    assert (a["num_targets"], a["num_detections"], a["num_ignored_detections"]) == (7, 7, 1)
    assert a["mr2"] == pytest.approx(gmean([3 / 7] * 7 + [2 / 7] * 2), rel=1e-12)


def test_caltech_reasonable_reproduces_the_earlier_default():
    # the example of tests/det_data/test_detdata_metrics.py (kaist_miss_rate "reasonable": 57.15 %)
    gts = [{"boxes": [[0, 0, 40, 100], [100, 0, 120, 40]], "ignore": [False, False]},
           {"boxes": [[0, 0, 40, 100], [200, 0, 300, 100]], "ignore": [False, True]},
           {"boxes": [[0, 0, 50, 120]], "ignore": [False]}]
    dets = [{"boxes": [[100, 0, 120, 45], [0, 0, 40, 100], [2, 0, 42, 100], [300, 300, 310, 330]],
             "scores": [0.95, 0.9, 0.85, 0.5]},
            {"boxes": [[210, 10, 250, 90], [0, 0, 40, 100], [400, 0, 440, 100]], "scores": [0.8, 0.7, 0.6]},
            none()]
    r = log_average_miss_rate(gts, dets, "caltech-reasonable")
    assert (r["num_targets"], r["num_detections"], r["num_ignored_detections"]) == (3, 4, 2)
    assert r["mr2"] == pytest.approx(math.exp((7 * math.log(2 / 3) + 2 * math.log(1 / 3)) / 9) * 100)
    # under KAIST every one of those people touches x = 0 or y = 0: all ignore regions, no MR
    k = log_average_miss_rate(gts, dets, "kaist-reasonable")
    assert k["num_targets"] == 0 and k["mr2"] is None and k["miss_rate"] == {"all": None}


# ------------------------------------------------------------------------------------------------ bad inputs
@pytest.mark.parametrize("gt, det, error, match", [
    ({"boxes": [[0, 0, float("nan"), 10]]}, none(), DataError, r"gt_per_image\[1\]: box 0 has non-finite"),
    ({"boxes": [[0, 0, 10]]}, none(), DataError, r"gt_per_image\[1\]: boxes must have shape \(N, 4\)"),
    ({"boxes": [[10, 10, 5, 50]]}, none(), DataError, r"gt_per_image\[1\]: box 0 .* x2 < x1"),
    ({"boxes": [[0, 0, 10, 10]], "heights": [1, 2]}, none(), DataError, r"gt_per_image\[1\]: 'heights' .*\(1,\)"),
    ({"boxes": [[0, 0, 10, 10]], "height": [1]}, none(), DataError, r"gt_per_image\[1\]: unknown keys \['height'\]"),
    ({"boxes": [[0, 0, 10, 10]], "occlusion": [1.5]}, none(), DataError, r"occlusion\[0\] = 1.5"),
    ({"boxes": [[0, 0, 10, 10]], "ignore": [2]}, none(), DataError, r"ignore\[0\] = 2"),
    ({"boxes": [[0, 0, 10, 10]], "labels": [None]}, none(), DataError, r"labels\[0\] = None"),
    ({"boxes": [[0, 0, 10, 10]], "labels": "person"}, none(), DataError, r"one label per box"),
    ({"boxes": []}, {"boxes": [[0, 0, 10, 10]], "scores": [0.5, 0.4]}, DataError,
     r"dets_per_image\[1\]: 1 boxes need 1 scores"),
    ({"boxes": []}, {"boxes": [[0, 0, 10, 10]], "scores": [float("inf")]}, DataError,
     r"dets_per_image\[1\]: scores\[0\] = inf"),
    ({"boxes": []}, {"boxes": [[0, 0, 10, 10]]}, DataError, r"dets_per_image\[1\]: 'scores' is missing"),
    ({"boxes": []}, {"boxes": [], "scores": [], "labels": []}, DataError, r"dets_per_image\[1\]: unknown keys"),
])
def test_bad_image_entries_name_the_image(gt, det, error, match):
    with pytest.raises(error, match=match):
        log_average_miss_rate([{"boxes": []}, gt], [none(), det])


def test_bad_arguments():
    with pytest.raises(ConfigError, match="2 images but dets_per_image has 1"):
        log_average_miss_rate([{"boxes": []}] * 2, [none()])
    with pytest.raises(ConfigError, match="conditions has 1 entries for 2 images"):
        log_average_miss_rate([{"boxes": []}] * 2, [none()] * 2, conditions=["day"])
    with pytest.raises(ConfigError, match="empty"):
        log_average_miss_rate([], [])
    with pytest.raises(ConfigError, match="Unknown miss-rate protocol 'reasonable'"):
        log_average_miss_rate([{"boxes": []}], [none()], "reasonable")


# ------------------------------------------------------------------------------------------------ randomised
def reference_mr(gts, dets, protocol, keep=None):
    """Dollár's procedure, written out plainly: xywh tuples, one global score-sorted list, greedy matching."""
    p = PROTOCOLS[protocol]
    images = [i for i in range(len(gts)) if keep is None or keep[i]]
    targets, regions, n_pos = {}, {}, 0
    for i in images:
        g = gts[i]
        targets[i], regions[i] = [], []
        for k, (x1, y1, x2, y2) in enumerate(g["boxes"]):
            box = (x1, y1, x2 - x1, y2 - y1)
            height = g["heights"][k] if "heights" in g else y2 - y1
            label = g["labels"][k] if "labels" in g else "person"
            is_target = label in ("person", 1)
            if g.get("ignore") is not None and g["ignore"][k]:
                is_target = False
            if height < p.min_height:
                is_target = False
            if p.max_occlusion is not None and "occlusion" in g and g["occlusion"][k] > p.max_occlusion:
                is_target = False
            if p.border is not None:
                bh, bw = g.get("image_size") or (512, 640)
                left, top, right, bottom = 5, 5, bw - 5, bh - 5
                if box[0] < left or box[1] < top or box[0] + box[2] > right or box[1] + box[3] > bottom:
                    is_target = False
            if is_target:
                targets[i].append([box, False])
                n_pos += 1
            else:
                regions[i].append(box)
    flat = []
    for i in images:
        for (x1, y1, x2, y2), s in zip(dets[i]["boxes"], dets[i]["scores"], strict=True):
            if p.det_min_height_ratio is not None and y2 - y1 < p.min_height * p.det_min_height_ratio:
                continue
            flat.append((float(s), i, (x1, y1, x2 - x1, y2 - y1)))
    flat.sort(key=lambda t: -t[0])  # Python's sort is stable: image order, then file order for equal scores

    def inter(a, b):
        w = min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0])
        h = min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1])
        return max(w, 0) * max(h, 0)

    tps, fps, xs, ys = 0, 0, [-math.inf], [0.0]
    for _, i, d in flat:
        best, best_o = None, None
        for t in targets[i]:
            if t[1]:
                continue
            o = inter(d, t[0]) / (d[2] * d[3] + t[0][2] * t[0][3] - inter(d, t[0]))
            if o >= 0.5 and (best is None or o > best_o):
                best, best_o = t, o
        if best is not None:
            best[1] = True
            tps += 1
        elif any(inter(d, r) / (d[2] * d[3]) >= 0.5 for r in regions[i]):
            continue
        else:
            fps += 1
        xs.append(fps / len(images))
        ys.append(tps / n_pos if n_pos else 0)
    if n_pos == 0:
        return None
    logs = []
    for e in range(9):
        ref = 10 ** (-2 + e / 4)
        j = max(k for k in range(len(xs)) if xs[k] <= ref + 1e-12)
        logs.append(math.log(max(1e-10, 1 - ys[j])))
    return math.exp(sum(logs) / 9) * 100


def random_set(seed):
    rng = random.Random(seed)
    gts, dets, conds = [], [], []
    for _ in range(rng.randint(2, 8)):
        boxes, labels, occ, ign, heights, dboxes, scores = [], [], [], [], [], [], []
        for _ in range(rng.randint(0, 6)):
            h = rng.uniform(15, 120)
            w = h * rng.uniform(0.3, 0.6)
            x, y = rng.uniform(-20, 660 - w), rng.uniform(-20, 530 - h)
            boxes.append([x, y, x + w, y + h])
            labels.append(rng.choice(["person"] * 5 + ["people", "cyclist", "person?", 1, 3]))
            occ.append(rng.choice([0, 0, 1, 2]))
            ign.append(rng.random() < 0.1)
            heights.append(h if rng.random() < 0.8 else rng.uniform(15, 120))
            if rng.random() < 0.75:  # a detection near it
                j = [rng.gauss(0, 0.12) for _ in range(4)]
                dboxes.append([x + j[0] * w, y + j[1] * h, x + w + j[2] * w, y + h + j[3] * h])
                scores.append(rng.uniform(0.2, 1.0))
        for _ in range(rng.randint(0, 4)):  # false positives (some short, some in ignore regions)
            h = rng.uniform(20, 120)
            x, y = rng.uniform(0, 600), rng.uniform(0, 450)
            dboxes.append([x, y, x + h * 0.41, y + h])
            scores.append(rng.uniform(0.0, 0.9))
        if rng.random() < 0.3:
            scores = [round(s, 1) for s in scores]  # ties, within and across images
        dboxes = [[b[0], b[1], max(b[0] + 1, b[2]), max(b[1] + 1, b[3])] for b in dboxes]
        g = {"boxes": boxes, "labels": labels, "occlusion": occ, "ignore": ign}
        if rng.random() < 0.5:
            g["heights"] = heights
        if rng.random() < 0.2:
            g["image_size"] = (1024, 1280)
        if rng.random() < 0.15:
            dboxes, scores = [], []
        gts.append(g)
        dets.append({"boxes": dboxes, "scores": scores})
        conds.append(rng.choice(["day", "night", None]))
    return gts, dets, conds


@pytest.mark.parametrize("protocol", list(PROTOCOLS))
def test_random_sets_match_a_plain_reimplementation(protocol):
    checked = 0
    for seed in range(50):
        gts, dets, conds = random_set(seed)
        r = log_average_miss_rate(gts, dets, protocol, conds)
        expected = reference_mr(gts, dets, protocol)
        if expected is None:
            assert r["mr2"] is None
        else:
            assert r["mr2"] == pytest.approx(expected, abs=1e-9, rel=0)
            checked += 1e-6 < expected < 100 - 1e-6  # neither floor nor 100 %
        for cond in ("day", "night"):
            if cond in conds:
                want = reference_mr(gts, dets, protocol, [c == cond for c in conds])
                got = r["miss_rate"][cond]
                assert (got is None) if want is None else got == pytest.approx(want, abs=1e-9, rel=0)
    assert checked >= 30  # most sets give an informative MR


# ------------------------------------------------------------------------------------------------ file readers
def kaist_json(first_id=0):
    i0 = first_id
    return {
        "images": [{"id": i0, "im_name": "set06/V000/I00019", "height": 512, "width": 640},
                   {"id": i0 + 1, "im_name": "set09/V001/I00039", "height": 512, "width": 640},
                   {"id": i0 + 2, "im_name": "set11/V000/I00059", "height": 512, "width": 640}],
        "annotations": [
            # id 0: a target on image 0 (MLPD's script counts a match to annotation 0 as a false positive)
            {"id": i0, "image_id": i0, "bbox": [100, 100, 40, 100], "category_id": 1, "height": 100, "occlusion": 0,
             "ignore": 0},
            {"id": i0 + 1, "image_id": i0, "bbox": [300, 100, 60, 100], "category_id": 3, "height": 100,
             "occlusion": 0, "ignore": 0},
            {"id": i0 + 2, "image_id": i0 + 1, "bbox": [200, 200, 40, 100], "category_id": 1, "height": 100,
             "occlusion": 1, "ignore": 0},
            {"id": i0 + 3, "image_id": i0 + 1, "bbox": [400, 200, 40, 100], "category_id": 1, "height": 100,
             "occlusion": 2, "ignore": 0},
            {"id": i0 + 4, "image_id": i0 + 2, "bbox": [50, 50, 40, 100], "category_id": 1, "height": 100,
             "occlusion": 0, "ignore": 1},
        ],
        "categories": [{"id": 1, "name": "person"}, {"id": 2, "name": "cyclist"}, {"id": 3, "name": "people"},
                       {"id": 4, "name": "person?"}],
    }


def write_json(path, data):
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


@pytest.mark.parametrize("first_id", [0, 1])
def test_annotation_json_round_trip(tmp_path, first_id):
    gt = read_kaist_annotations(write_json(tmp_path / "gt.json", kaist_json(first_id)))
    assert gt.image_ids == [first_id, first_id + 1, first_id + 2] and len(gt) == 3
    assert gt.conditions == ["day", "night", "night"]
    assert gt.annotation_ids[0] == [first_id, first_id + 1]
    img = gt.images[0]
    np.testing.assert_array_equal(img["boxes"], [[100, 100, 140, 200], [300, 100, 360, 200]])
    assert img["labels"] == ["person", "people"] and img["image_size"] == (512, 640)
    np.testing.assert_array_equal(gt.images[1]["occlusion"], [1, 2])
    np.testing.assert_array_equal(gt.images[2]["ignore"], [True])
    assert kaist_condition("set03/V000/I00001") == "night" and kaist_condition("frame_001") is None


def test_txt_and_coco_results_score_the_same(tmp_path):
    gt_path = write_json(tmp_path / "gt.json", kaist_json(0))
    # 1-based ids: 1 -> image 0, 2 -> image 1; id 4 is not an image (3 images)
    txt = tmp_path / "det.txt"
    txt.write_text("1,100,100,40,100,0.9\n\n2,200,200,40,100,0.8\n2 400 200 40 100 0.7\n4,1,1,40,100,0.5\n")
    r = score_kaist(gt_path, txt)
    # targets: annotation 0 (image 0) and 2 (image 1, partial occlusion); 1 people, 3 heavy, 4 ignore flag are
    # ignore regions. Both targets found at FPPI 0, the detection on annotation 3 is absorbed -> miss 0 everywhere.
    assert (r["num_targets"], r["num_detections"], r["num_ignored_detections"]) == (2, 2, 1)
    assert r["mr2"] == pytest.approx(FLOOR)
    assert r["miss_rate"]["day"] == pytest.approx(FLOOR) and r["miss_rate"]["night"] == pytest.approx(FLOOR)
    assert (r["num_predictions"], r["num_unmatched_predictions"], r["unmatched_image_ids"]) == (4, 1, [4])
    coco = [{"image_id": 0, "bbox": [100, 100, 40, 100], "score": 0.9, "category_id": 1},
            {"image_id": 1, "bbox": [200, 200, 40, 100], "score": 0.8},
            {"image_id": 1, "bbox": [400, 200, 40, 100], "score": 0.7, "category_id": 1},
            {"image_id": 1, "bbox": [0, 0, 40, 100], "score": 0.99, "category_id": 2},
            {"image_id": 7, "bbox": [1, 1, 40, 100], "score": 0.5}]
    c = score_kaist(gt_path, write_json(tmp_path / "det.json", coco))
    assert c["mr2"] == r["mr2"] and c["num_other_category"] == 1 and c["unmatched_image_ids"] == [7]
    # without the target of annotation 0 found: 1 of 2 missed overall, day (image 0 only) misses everything
    txt.write_text("2,200,200,40,100,0.8\n")
    m = score_kaist(gt_path, txt)
    assert m["mr2"] == pytest.approx(50) and m["miss_rate"]["day"] == pytest.approx(100)
    assert m["miss_rate"]["night"] == pytest.approx(FLOOR)
    k = score_kaist(gt_path, txt, "kaist-all")  # heavy occlusion is a target there: 3 targets, 1 found
    assert k["num_targets"] == 3 and k["mr2"] == pytest.approx(200 / 3)


def test_reader_predictions_per_image(tmp_path):
    gt = read_kaist_annotations(write_json(tmp_path / "gt.json", kaist_json(1)))
    txt = tmp_path / "det.txt"
    txt.write_text("3,10,20,30,40,0.5\n0,1,1,1,1,0.1\n")
    p = read_kaist_txt(txt, gt)
    np.testing.assert_array_equal(p.dets[2]["boxes"], [[10, 20, 40, 60]])
    assert p.dets[0]["boxes"].shape == (0, 4) and p.unmatched == [("line 2", 0)]
    coco = read_coco_results(write_json(tmp_path / "r.json", [{"image_id": 3, "bbox": [1, 2, 3, 4], "score": 1}]), gt)
    np.testing.assert_array_equal(coco.dets[2]["boxes"], [[1, 2, 4, 6]])


def bad_json(mutate):
    data = kaist_json(0)
    mutate(data)
    return data


@pytest.mark.parametrize("mutate, match", [
    (lambda d: d["annotations"][2].update(image_id=9), r"annotation id 2 has image_id 9, which is not an image"),
    (lambda d: d["annotations"][2].update(id=0), r"duplicate annotation id 0"),
    (lambda d: d["images"][1].update(id=0), r"duplicate image id 0"),
    (lambda d: d["annotations"][1].update(category_id=5), r"annotation id 1 has category_id 5"),
    (lambda d: d["annotations"][1].update(bbox=[1, 2, float("nan"), 4]), r"annotation id 1: bbox must be 4 finite"),
    (lambda d: d["annotations"][1].update(bbox=[1, 2, 3]), r"annotation id 1: bbox must be 4 finite"),
    (lambda d: d["annotations"][1].update(occlusion=3), r"annotation id 1 has occlusion 3"),
    (lambda d: d["annotations"][1].update(height=float("inf")), r"annotation id 1 has height inf"),
    (lambda d: d["annotations"][1].update(ignore=2), r"annotation id 1 has ignore 2"),
    (lambda d: d["images"][0].pop("im_name"), r"image id 0 needs an 'im_name'"),
    (lambda d: d["images"][0].update(width=-1), r"image id 0 has height 512 and width -1"),
    (lambda d: d.pop("annotations"), r"not a KAIST annotation json"),
])
def test_bad_annotation_json_names_the_file(tmp_path, mutate, match):
    path = write_json(tmp_path / "bad_gt.json", bad_json(mutate))
    with pytest.raises(DataError, match=match) as info:
        read_kaist_annotations(path)
    assert str(path) in str(info.value)


def test_unparsable_files_name_the_file(tmp_path):
    bad = tmp_path / "broken.json"
    bad.write_text("{not json")
    with pytest.raises(DataError, match="Cannot parse KAIST annotation json .*broken.json"):
        read_kaist_annotations(bad)
    with pytest.raises(DataError, match="Cannot read KAIST annotation json .*missing.json"):
        read_kaist_annotations(tmp_path / "missing.json")
    gt_path = write_json(tmp_path / "gt.json", kaist_json(0))
    with pytest.raises(DataError, match="unknown prediction format '.csv'"):
        score_kaist(gt_path, tmp_path / "det.csv")


@pytest.mark.parametrize("text, match", [
    ("1,1,1,10,10,0.5\n\n1,1,1,10,10\n", r"line 3: expected 6 values"),
    ("1,1,1,10,10,0.5\nx,1,1,10,10,0.5\n", r"line 2: expected an integer image id"),
    ("1.5,1,1,10,10,0.5\n", r"line 1: expected an integer image id"),
    ("1,1,1,10,nan,0.5\n", r"line 1: non-finite"),
    ("1,1,1,-10,10,0.5\n", r"line 1: negative width or height"),
])
def test_bad_txt_names_file_and_line(tmp_path, text, match):
    gt = read_kaist_annotations(write_json(tmp_path / "gt.json", kaist_json(0)))
    path = tmp_path / "bad_det.txt"
    path.write_text(text)
    with pytest.raises(DataError, match=match) as info:
        read_kaist_txt(path, gt)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("data, match", [
    ({"annotations": []}, r"json list"),
    ([{"image_id": "0", "bbox": [1, 1, 1, 1], "score": 1}], r"entry 0 has image_id '0'"),
    ([{"image_id": 0, "bbox": [1, 1, 1], "score": 1}], r"entry 0: bbox must be 4 finite"),
    ([{"image_id": 0, "bbox": [1, 1, 1, 1], "score": None}], r"entry 0 has score None"),
    ([{"image_id": 0, "bbox": [1, 1, 1, 1], "score": 1, "category_id": "person"}], r"entry 0 has category_id"),
])
def test_bad_coco_results_name_the_file(tmp_path, data, match):
    gt = read_kaist_annotations(write_json(tmp_path / "gt.json", kaist_json(0)))
    path = write_json(tmp_path / "bad_det.json", data)
    with pytest.raises(DataError, match=match) as info:
        read_coco_results(path, gt)
    assert str(path) in str(info.value)
