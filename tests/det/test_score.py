"""`ivtune score det`: KAIST files end to end against hand-derived miss rates (each protocol rule exercised), the
same set through a KAIST dataset config, COCO AP against pycocotools itself, unmatched predictions named, and every
user mistake a clear exit-2 error."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from ivtune.cli import main
from ivtune.errors import ConfigError, DataError
from ivtune.runner.score import score_det
from tests.helpers import retarget

REPO = Path(__file__).resolve().parents[2]
TINY_DET = REPO / "configs" / "det" / "synthetic_tiny_fcos.yaml"
FLOOR = 1e-10


def gmean(values):
    return math.exp(sum(math.log(max(v, FLOOR)) for v in values) / len(values)) * 100


# ------------------------------------------------------------------------------------------------ the KAIST set
# 640x512 frames. Per annotation: (image id, category id, [x, y, w, h], occlusion); height = h.
KAIST_IMAGES = [(1, "set06/V000/I00001"), (2, "set06/V000/I00002"), (3, "set09/V000/I00001"),
                (4, "set09/V000/I00002")]  # set06 day, set09 night
KAIST_ANNS = [
    (1, 1, [100, 100, 40, 100], 0),   # a1 person: target
    (1, 1, [300, 100, 20, 54], 0),    # a2 person 54 px: ignored by kaist-* (< 55), a target for caltech (>= 50)
    (1, 1, [2, 200, 40, 100], 0),     # a3 person crossing the border (x 2 < 5): ignored by kaist-*, caltech target
    (2, 1, [200, 150, 50, 120], 0),   # a4 person: target
    (2, 3, [400, 100, 60, 100], 0),   # a5 people: always an ignore region
    (3, 1, [100, 100, 40, 90], 2),    # a6 person, heavily occluded: ignored (occlusion <= 1)
    (3, 1, [300, 300, 30, 80], 1),    # a7 person, partially occluded: target
    (4, 1, [50, 50, 40, 100], 0),     # a8 person: target, and its image has no detection at all
]
# (1-based image index, x, y, w, h, score)
KAIST_DETS = [
    (1, 100, 100, 40, 100, 0.9),      # d1 on a1: TP
    (1, 300, 100, 20, 54, 0.8),       # d2 on a2: absorbed by the ignore region (kaist), TP (caltech)
    (1, 500, 400, 20, 30, 0.7),       # d3 30 px tall, on nothing: kept by kaist (FP), dropped by caltech (< 40)
    (2, 205, 150, 50, 120, 0.6),      # d4 on a4 (IoU 45*120 / (2*6000 - 5400) = 0.82): TP
    (2, 400, 100, 60, 100, 0.95),     # d5 on a5 (people): absorbed
    (3, 300, 300, 30, 80, 0.3),       # d6 on a7: TP
    (3, 500, 50, 40, 100, 0.5),       # d7 on nothing: FP
    (7, 10, 10, 20, 50, 0.4),         # image index 7 does not exist: reported, not scored
]
# kaist-reasonable, by hand. Targets a1, a4, a7, a8 (4); kept by score: d1 TP, d3 FP, d4 TP, d7 FP, d6 TP over
# 4 images -> (fppi, miss) (0, 3/4), (1/4, 3/4), (1/4, 1/2), (1/2, 1/2), (1/2, 1/4): the 6 references below 1/4 read
# 3/4, 10^-0.5 reads 1/2, 10^-0.25 and 1 read 1/4.
MR_ALL = gmean([3 / 4] * 6 + [1 / 2, 1 / 4, 1 / 4])
# day (images 1, 2): targets a1, a4; d1 TP, d3 FP, d4 TP over 2 images -> (0, 1/2), (1/2, 1/2), (1/2, 0)
MR_DAY = gmean([1 / 2] * 7 + [0, 0])
# night (images 3, 4): targets a7, a8; d7 FP, d6 TP -> (1/2, 1), (1/2, 1/2): 7 references read the start (miss 1)
MR_NIGHT = gmean([1] * 7 + [1 / 2, 1 / 2])
# caltech-reasonable: targets a1, a2, a3, a4, a7, a8 (6); d3 dropped; d1 TP, d2 TP, d4 TP, d7 FP, d6 TP ->
# (0, 5/6), (0, 4/6), (0, 3/6), (1/4, 3/6), (1/4, 2/6)
MR_CALTECH = gmean([1 / 2] * 6 + [1 / 3] * 3)


def write_kaist(tmp_path: Path) -> tuple[Path, Path, Path]:
    """The community-format annotation json, the KAIST txt and the same detections as a COCO results json."""
    gt = {"images": [{"id": i, "im_name": n, "height": 512, "width": 640} for i, n in KAIST_IMAGES],
          "annotations": [{"id": k, "image_id": img, "category_id": cat, "bbox": box, "height": box[3],
                           "occlusion": occ, "ignore": 0} for k, (img, cat, box, occ) in enumerate(KAIST_ANNS)],
          "categories": [{"id": 1, "name": "person"}, {"id": 2, "name": "cyclist"}, {"id": 3, "name": "people"},
                         {"id": 4, "name": "person?"}]}
    gt_path = tmp_path / "kaist_test.json"
    gt_path.write_text(json.dumps(gt))
    txt = tmp_path / "dets.txt"
    txt.write_text("".join(f"{i},{x},{y},{w},{h},{s}\n" for i, x, y, w, h, s in KAIST_DETS))
    coco = tmp_path / "dets.json"
    coco.write_text(json.dumps([{"image_id": i, "category_id": 1, "bbox": [x, y, w, h], "score": s}
                                for i, x, y, w, h, s in KAIST_DETS]))
    return gt_path, txt, coco


def run_cli(args):
    return CliRunner().invoke(main, ["score", *[str(a) for a in args]])


def test_score_det_kaist_txt_end_to_end(tmp_path):
    gt, txt, _ = write_kaist(tmp_path)
    out = tmp_path / "out"
    r = run_cli(["det", gt, txt, "--json", "--out", out])
    assert r.exit_code == 0, r.output
    obj = json.loads(r.output)
    assert obj["protocol"] == "kaist-reasonable" and obj["fppi_decimals"] is None
    assert obj["miss_rate"]["all"] == pytest.approx(MR_ALL)  # 56.17
    assert obj["miss_rate"]["day"] == pytest.approx(MR_DAY)  # 0.35
    assert obj["miss_rate"]["night"] == pytest.approx(MR_NIGHT)  # 85.72
    assert (obj["num_images"], obj["num_targets"]) == (4, 4)
    # the line for image 7 and the image without detections are named, with counts
    assert obj["unmatched"]["predictions_without_ground_truth"] == {
        "count": 1, "paths": [f"{txt} line 8: image_id 7"]}
    assert obj["unmatched"]["ground_truth_without_predictions"]["count"] == 1
    assert "set09/V000/I00002" in obj["unmatched"]["ground_truth_without_predictions"]["paths"][0]
    # the eval report files, with one MR row per condition
    payload = json.loads((out / "metrics.json").read_text())
    rows = payload["results"]
    assert set(rows) == {"all", "day", "night"}
    assert rows["night"]["kaist"]["mr2"] == pytest.approx(MR_NIGHT)
    assert rows["day"]["kaist"]["num_targets"] == 2 and "miss_curve" not in rows["all"]["kaist"]
    md = (out / "metrics.md").read_text()
    assert f"| all | kaist-reasonable | {MR_ALL:.2f} | 4 | 4 | 5 | 2 |" in md
    assert f"| night | kaist-reasonable | {MR_NIGHT:.2f} |" in md and "height >= 55 px" in md
    assert "mAP" not in md  # miss-rate-only: no empty COCO tables
    assert json.loads((out / "score.json").read_text())["miss_rate"]["all"] == pytest.approx(MR_ALL)


def test_score_det_kaist_text_output_and_protocols(tmp_path):
    gt, txt, coco = write_kaist(tmp_path)
    r = run_cli(["det", gt, txt, "--out", tmp_path / "o1"])
    assert r.exit_code == 0, r.output
    assert f"MR^-2 {MR_ALL:5.2f} (kaist-reasonable)" in r.output
    assert "predictions without ground truth: 1" in r.output and "line 8: image_id 7" in r.output
    assert "ground truth without predictions: 1" in r.output and "metrics:" in r.output
    caltech = score_det(gt, txt, protocol="caltech-reasonable")
    assert caltech.summary["miss_rate"]["all"] == pytest.approx(MR_CALTECH)  # 43.68
    # the COCO results json scores the same as the txt; MLPD's rounded FPPI changes nothing on this curve
    from_coco = score_det(gt, coco, fppi_decimals=4)
    assert from_coco.summary["miss_rate"] == pytest.approx({"all": MR_ALL, "day": MR_DAY, "night": MR_NIGHT})
    assert from_coco.summary["fppi_decimals"] == 4
    assert from_coco.unmatched["predictions_without_ground_truth"] == [f"{coco} entry 7: image_id 7"]
    # kaist-all (height >= 20, any occlusion): a2 and a6 become targets, a3 still crosses the border
    kall = score_det(gt, txt, protocol="kaist-all").results["all"]["kaist"]
    assert kall["num_targets"] == 6 and kall["protocol"] == "kaist-all"


# ------------------------------------------------------------------------------------------------ dataset config
def write_kaist_tree(root: Path) -> None:
    """The same annotations as bbGt v3 files in a KAIST tree (640x512 images), listed in test.txt."""
    names = {1: "person", 2: "cyclist", 3: "people", 4: "person?"}
    lines = []
    for img_id, name in KAIST_IMAGES:
        s, v, f = name.split("/")
        for sub in ("visible", "lwir"):
            (root / s / v / sub).mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.zeros((512, 640, 3), np.uint8)).save(root / s / v / sub / f"{f}.jpg")
        rows = [f"{names[cat]} {x} {y} {w} {h} {occ} 0 0 0 0 0 0"
                for i, cat, (x, y, w, h), occ in KAIST_ANNS if i == img_id]
        ann = root / "annotations" / s / v / f"{f}.txt"
        ann.parent.mkdir(parents=True, exist_ok=True)
        ann.write_text("% bbGt version=3\n" + "".join(r + "\n" for r in rows))
        lines.append(name)
    (root / "test.txt").write_text("\n".join(lines) + "\n")


def test_score_det_dataset_config_applies_the_protocol_to_raw_annotations(tmp_path):
    write_kaist_tree(tmp_path / "KAIST")
    _, txt, _ = write_kaist(tmp_path)
    cfg = retarget(TINY_DET, "kaist", tmp_path)
    sets = ["--set", f"data.root={tmp_path / 'KAIST'}", "--set", "data.train_split=test"]
    r = run_cli(["det", cfg, txt, "--split", "test", *sets, "--json", "--out", tmp_path / "o"])
    assert r.exit_code == 0, r.output
    obj = json.loads(r.output)
    # the dataset's default protocol (data.kaist_protocol: kaist-reasonable) on the raw heights / occlusion /
    # labels / border: the same numbers as the community json, plus COCO AP (the KAIST export is COCO too)
    assert obj["protocol"] == "kaist-reasonable"
    assert obj["miss_rate"] == pytest.approx({"all": MR_ALL, "day": MR_DAY, "night": MR_NIGHT})
    assert obj["mAP"] is not None and set(obj["by_condition"]) == {"day", "night"}
    md = (tmp_path / "o" / "metrics.md").read_text()
    assert "| split | mAP |" in md and f"| day | kaist-reasonable | {MR_DAY:.2f} |" in md
    # data.kaist_protocol picks the protocol; --protocol overrides it
    r = run_cli(["det", cfg, txt, *sets, "--set", "data.kaist_protocol=caltech-reasonable", "--json", "--out",
                 tmp_path / "o2"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["miss_rate"]["all"] == pytest.approx(MR_CALTECH)
    assert score_det(cfg, txt, overrides=sets[1::2], protocol="kaist-all").summary["protocol"] == "kaist-all"
    # the dataset's COCO export saved as a json scores the same (it names its protocol, so it is not taken for the
    # community json)
    from ivtune.config import load_config
    from ivtune.tasks import get_task

    conf = load_config(cfg, sets[1::2])
    export = tmp_path / "export.json"
    export.write_text(json.dumps(get_task("det").build_dataset(conf, "test", train=False).to_coco()))
    assert score_det(export, txt).summary["miss_rate"] == pytest.approx(obj["miss_rate"])


def test_kaist_dataset_keeps_raw_facts_and_trains_on_the_protocols_targets(tmp_path):
    from ivtune.tasks.det.datasets import build_det_dataset

    root = tmp_path / "K"
    for sub in ("visible", "lwir"):
        (root / "set06" / "V000" / sub).mkdir(parents=True)
        Image.fromarray(np.zeros((512, 640, 3), np.uint8)).save(root / "set06" / "V000" / sub / "I00001.jpg")
    (root / "annotations").mkdir()
    (root / "annotations" / "set06_V000_I00001.txt").write_text(
        "% bbGt version=3\n"
        "person 100 100 40 54 0 0 0 0 0 0 0\n"      # 54 px: not a kaist-reasonable target, a caltech one
        "person 700 10 20 60 0 0 0 0 0 0 0\n"       # entirely outside the 640 px frame: dropped (zero area)
        "person 620 200 40 100 1 0 0 0 0 0 0\n"     # clipped to x2 = 640: crosses the border
        "cyclist 300 100 40 100 0 0 0 0 0 0 0\n"
        "person 400 100 40 100 0 0 0 0 0 1 0\n")    # the file's ign flag
    (root / "test.txt").write_text("set06/V000/I00001\n")
    ds = build_det_dataset("kaist", root, "test")
    assert ds.protocol.name == "kaist-reasonable" and ds.dropped_boxes == 1
    coco = ds.to_coco()
    anns = coco["annotations"]
    assert coco["miss_rate_protocol"] == "kaist-reasonable" and len(anns) == 4
    # the raw facts follow their boxes past the dropped one
    assert [a["kaist_category"] for a in anns] == ["person", "person", "cyclist", "person"]
    assert [a["height"] for a in anns] == [54, 100, 100, 100] and [a["occlusion"] for a in anns] == [0, 1, 0, 0]
    assert [a["kaist_ignore"] for a in anns] == [0, 0, 0, 1] and anns[1]["bbox"] == [620, 200, 20, 100]
    # training ignore regions = what kaist-reasonable does not count (54 px, border, cyclist, ign): all four
    assert [a["iscrowd"] for a in anns] == [1, 1, 1, 1]
    caltech = build_det_dataset("kaist", root, "test", kaist_protocol="caltech-reasonable").to_coco()
    assert [a["iscrowd"] for a in caltech["annotations"]] == [0, 0, 1, 1]  # no border rule, 50 px
    every = build_det_dataset("kaist", root, "test", kaist_setting="all").to_coco()
    assert [a["iscrowd"] for a in every["annotations"]] == [0, 0, 1, 1]  # only the label and the ign flag
    low = build_det_dataset("kaist", root, "test", kaist_min_height=50).to_coco()
    assert [a["iscrowd"] for a in low["annotations"]] == [0, 1, 1, 1]  # 54 >= 50 in training only
    assert low["miss_rate_protocol"] == "kaist-reasonable"
    with pytest.raises(ConfigError, match="Unknown miss-rate protocol"):
        build_det_dataset("kaist", root, "test", kaist_protocol="reasonable")


# ------------------------------------------------------------------------------------------------ COCO
def coco_set(tmp_path: Path) -> tuple[Path, Path, dict, list]:
    gt = {"images": [{"id": 10, "file_name": "a.png", "width": 200, "height": 160},
                     {"id": 11, "file_name": "b.png", "width": 200, "height": 160},
                     {"id": 12, "file_name": "c.png", "width": 200, "height": 160}],
          "annotations": [
              {"id": 1, "image_id": 10, "category_id": 3, "bbox": [10, 10, 50, 80], "area": 4000, "iscrowd": 0},
              {"id": 2, "image_id": 10, "category_id": 5, "bbox": [100, 40, 60, 30], "area": 1800, "iscrowd": 0},
              {"id": 3, "image_id": 11, "category_id": 3, "bbox": [20, 30, 40, 70], "area": 2800, "iscrowd": 0},
              {"id": 4, "image_id": 12, "category_id": 5, "bbox": [50, 50, 80, 60], "area": 4800, "iscrowd": 0},
              {"id": 5, "image_id": 12, "category_id": 3, "bbox": [0, 0, 30, 30], "area": 900, "iscrowd": 1}],
          "categories": [{"id": 3, "name": "person"}, {"id": 5, "name": "car"}]}
    rng = np.random.default_rng(0)
    dets = []
    for a in gt["annotations"]:
        for _ in range(3):  # jittered copies with random scores: a non-trivial ranking
            x, y, w, h = (v + float(rng.normal(0, 4)) for v in a["bbox"])
            dets.append({"image_id": a["image_id"], "category_id": a["category_id"],
                         "bbox": [x, y, abs(w), abs(h)], "score": float(rng.uniform(0.1, 1))})
    dets.append({"image_id": 11, "category_id": 5, "bbox": [150, 100, 30, 30], "score": 0.99})  # a false car
    gt_path, pred_path = tmp_path / "gt.json", tmp_path / "pred.json"
    gt_path.write_text(json.dumps(gt))
    pred_path.write_text(json.dumps(dets + [{"image_id": 99, "category_id": 3, "bbox": [0, 0, 5, 5], "score": 0.5},
                                            {"image_id": 10, "category_id": 8, "bbox": [0, 0, 5, 5], "score": 0.5}]))
    return gt_path, pred_path, gt, dets


def pycocotools_stats(gt: dict, dets: list) -> np.ndarray:
    """pycocotools itself, straight from its README recipe (independent of ivtune's wrapper)."""
    import contextlib
    import io

    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = json.loads(json.dumps(gt))
        coco_gt.createIndex()
        ev = COCOeval(coco_gt, coco_gt.loadRes(dets), "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev.stats


def test_score_det_coco_matches_pycocotools(tmp_path):
    gt_path, pred_path, gt, dets = coco_set(tmp_path)
    r = run_cli(["det", gt_path, pred_path, "--json", "--out", tmp_path / "o"])
    assert r.exit_code == 0, r.output
    obj = json.loads(r.output)
    stats = pycocotools_stats(gt, dets)
    assert obj["mAP"] == pytest.approx(stats[0] * 100) and obj["AP50"] == pytest.approx(stats[1] * 100)
    assert obj["AP75"] == pytest.approx(stats[2] * 100)
    assert 0 < obj["mAP"] < 100 and "miss_rate" not in obj
    unmatched = obj["unmatched"]
    assert unmatched["predictions_without_ground_truth"]["paths"] == [f"{pred_path} entry 16: image_id 99"]
    assert unmatched["predictions_of_other_categories"]["paths"] == [f"{pred_path} entry 17: category_id 8"]
    assert unmatched["ground_truth_without_predictions"]["count"] == 0
    assert (tmp_path / "o" / "pr_curves.png").stat().st_size > 1000
    # --protocol adds the person miss rate beside COCO AP (no border rule: 200x160 images)
    both = score_det(gt_path, pred_path, protocol="caltech-reasonable").summary
    assert both["mAP"] == pytest.approx(stats[0] * 100) and both["miss_rate"]["all"] is not None


def test_score_det_coco_images_without_predictions_are_named(tmp_path):
    gt_path, _, gt, dets = coco_set(tmp_path)
    only_10 = tmp_path / "p.json"
    only_10.write_text(json.dumps([d for d in dets if d["image_id"] == 10]))
    res = score_det(gt_path, only_10)
    assert res.unmatched["ground_truth_without_predictions"] == [f"{gt_path}: image id 11 (b.png)",
                                                                 f"{gt_path}: image id 12 (c.png)"]
    assert res.summary["mAP"] == pytest.approx(pycocotools_stats(gt, [d for d in dets if d["image_id"] == 10])[0]
                                               * 100)


# ------------------------------------------------------------------------------------------------ user mistakes
@pytest.mark.parametrize("case, match", [
    ("bad_protocol", "Unknown miss-rate protocol 'kaist'"),
    ("pred_suffix", "must be a COCO results .json or a KAIST .txt"),
    ("gt_suffix", "must be a COCO / KAIST annotation .json or a dataset config"),
    ("split_with_json", "--split and --set apply to a dataset config"),
    ("not_coco", "not a COCO detection ground truth"),
    ("bad_json", "Cannot parse ground-truth json"),
    ("bad_txt", "line 1: expected 6 values"),
    ("results_dict", "a COCO results file is a json list"),
    ("bad_box", "bbox must be 4 finite numbers"),
    ("txt_multiclass", "a KAIST txt has no class column"),
])
def test_user_mistakes_are_exit_2_errors(tmp_path, case, match):
    gt, txt, coco = write_kaist(tmp_path)
    coco_gt, coco_pred, _, _ = coco_set(tmp_path)
    other = tmp_path / "x.csv"
    other.write_text("1,2,3")
    args = {
        "bad_protocol": ["det", gt, txt, "--protocol", "kaist"],
        "pred_suffix": ["det", gt, other],
        "gt_suffix": ["det", other, txt],
        "split_with_json": ["det", gt, txt, "--split", "test"],
        "not_coco": ["det", coco_pred, txt],
        "bad_json": ["det", other.with_suffix(".json"), txt],
        "bad_txt": ["det", gt, tmp_path / "bad.txt"],
        "results_dict": ["det", coco_gt, tmp_path / "dict.json"],
        "bad_box": ["det", coco_gt, tmp_path / "badbox.json"],
        "txt_multiclass": ["det", coco_gt, txt],
    }[case]
    other.with_suffix(".json").write_text("{not json")
    (tmp_path / "bad.txt").write_text("1,2,3\n")
    (tmp_path / "dict.json").write_text(json.dumps({"detections": []}))
    (tmp_path / "badbox.json").write_text(json.dumps([{"image_id": 10, "category_id": 3, "bbox": [1, 2, 3],
                                                       "score": 1}]))
    r = run_cli(args)
    assert r.exit_code == 2, r.output
    assert r.output.startswith("error: ") and match in r.output and "Traceback" not in r.output


def test_score_det_missing_file_and_wrong_task_config(tmp_path):
    gt, txt, _ = write_kaist(tmp_path)
    r = run_cli(["det", tmp_path / "nope.json", txt])
    assert r.exit_code == 2 and "does not exist" in r.output
    seg_cfg = REPO / "configs" / "seg" / "synthetic_tiny.yaml"
    if seg_cfg.is_file():
        with pytest.raises(ConfigError, match="needs a detection config"):
            score_det(seg_cfg, txt)
    with pytest.raises(DataError, match="has no images"):
        empty = tmp_path / "empty.json"
        empty.write_text(json.dumps({"images": [], "annotations": [], "categories": []}))
        score_det(empty, txt)
