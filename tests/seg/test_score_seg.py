"""`ivtune score seg`: class-id PNGs against labels matched by stem, checked against IoU counted here with numpy;
ivtune predict's NAME_mask.png files, per-condition rows, unmatched files named, user mistakes as exit-2 errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from ivtune.cli import main
from ivtune.runner.score import score_seg

CLASSES = ["background", "road", "person"]


def save(path: Path, arr: np.ndarray, palette: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    img = Image.fromarray(arr.astype(np.uint8), mode="P" if palette else "L")
    if palette:
        img.putpalette([0, 0, 0, 200, 0, 0, 0, 200, 0] + [0] * (768 - 9))
    img.save(path)
    return path


def tree(tmp_path: Path, mask_suffix: str = "") -> tuple[Path, Path, dict[str, tuple[np.ndarray, np.ndarray]]]:
    """Labels and predictions for 00001D (day), 00002N (night), one extra prediction and one extra label."""
    rng = np.random.default_rng(0)
    pairs = {}
    for stem in ("00001D", "00002N"):
        label = rng.integers(0, 3, (8, 12))
        label[0, :4] = 255  # unlabelled pixels: never counted
        pred = np.where(rng.random((8, 12)) < 0.7, np.where(label == 255, 0, label), rng.integers(0, 3, (8, 12)))
        save(tmp_path / "labels" / f"{stem}.png", label)
        save(tmp_path / "preds" / f"{stem}{mask_suffix}.png", pred, palette=True)  # palette PNG, as ivtune predict
        pairs[stem] = (pred, label)
    save(tmp_path / "preds" / f"00009D{mask_suffix}.png", np.zeros((8, 12)))  # no label
    save(tmp_path / "labels" / "00003D.png", np.zeros((8, 12)))  # no prediction
    return tmp_path / "preds", tmp_path / "labels", pairs


def iou_by_hand(pairs, k: int) -> float:
    tp = fp = fn = 0
    for pred, label in pairs:
        valid = label != 255
        tp += int(((pred == k) & (label == k) & valid).sum())
        fp += int(((pred == k) & (label != k) & valid).sum())
        fn += int(((pred != k) & (label == k) & valid).sum())
    return 100 * tp / (tp + fp + fn)


def test_score_seg_matches_iou_counted_by_hand(tmp_path):
    preds, labels, pairs = tree(tmp_path)
    out = tmp_path / "out"
    r = CliRunner().invoke(main, ["score", "seg", str(preds), str(labels), "--classes", ",".join(CLASSES), "--json",
                                  "--out", str(out)])
    assert r.exit_code == 0, r.output
    obj = json.loads(r.output)
    expected = [iou_by_hand(pairs.values(), k) for k in range(3)]
    assert list(obj["per_class_iou"]) == CLASSES
    assert list(obj["per_class_iou"].values()) == pytest.approx(expected)
    assert obj["miou"] == pytest.approx(np.mean(expected)) and obj["num_images"] == 2
    night = [iou_by_hand([pairs["00002N"]], k) for k in range(3)]
    assert obj["by_condition"] == pytest.approx({"day": np.mean([iou_by_hand([pairs["00001D"]], k)
                                                                for k in range(3)]), "night": np.mean(night)})
    assert obj["unmatched"]["predictions_without_ground_truth"] == {"count": 1,
                                                                    "paths": [str(preds / "00009D.png")]}
    assert obj["unmatched"]["ground_truth_without_predictions"]["paths"] == [str(labels / "00003D.png")]
    payload = json.loads((out / "metrics.json").read_text())  # the same report as ivtune eval
    assert payload["class_names"] == CLASSES and set(payload["results"]) == {"all", "day", "night"}
    assert payload["results"]["all"]["per_class_iou"] == pytest.approx(expected)
    md = (out / "metrics.md").read_text()
    assert "| all |" in md and f"{expected[2]:.2f}" in md
    assert (out / "per_class_iou.png").is_file() and (out / "score.json").is_file()


def test_score_seg_reads_ivtune_predict_masks_and_dataset_classes(tmp_path):
    preds, labels, pairs = tree(tmp_path, mask_suffix="_mask")
    # ivtune predict also writes colour and overlay images; only NAME_mask.png are predictions, for NAME
    Image.fromarray(np.full((8, 12, 3), (200, 0, 0), np.uint8)).save(preds / "00001D_color.png")
    res = score_seg(preds, labels, classes=CLASSES)
    assert res.summary["per_class_iou"]["person"] == pytest.approx(iou_by_hand(pairs.values(), 2))
    assert res.unmatched["predictions_without_ground_truth"] == [str(preds / "00009D_mask.png")]
    # text output through the CLI
    r = CliRunner().invoke(main, ["score", "seg", str(preds), str(labels), "--classes", ",".join(CLASSES), "--out",
                                  str(tmp_path / "o")])
    assert r.exit_code == 0, r.output
    assert "mIoU" in r.output and "predictions without ground truth: 1" in r.output and "00003D.png" in r.output
    # a dataset's class list (MFNet: 9 classes; these labels use 0..2, so classes 3..8 have no pixels -> left out)
    mf = score_seg(preds, labels, dataset="mfnet")
    assert list(mf.summary["per_class_iou"])[:3] == ["unlabeled", "car", "person"]
    assert mf.summary["miou"] == pytest.approx(res.summary["miou"])
    # a classes.txt file works too
    (tmp_path / "classes.txt").write_text("".join(f"{i} {c}\n" for i, c in enumerate(CLASSES)))
    assert score_seg(preds, labels, classes=str(tmp_path / "classes.txt")).summary["miou"] == pytest.approx(
        res.summary["miou"])


@pytest.mark.parametrize("case, match", [
    ("no_classes", "exactly one of --classes"),
    ("both", "exactly one of --classes"),
    ("unknown_dataset", "Unknown segmentation dataset 'mfnett'"),
    ("root_classes", "reads its classes from its root"),
    ("size", "prediction (8, 10) (H, W) but label"),
    ("pred_values", "values [7] outside the 3 classes"),
    ("label_values", "values [9] outside the 3 classes (0..2) and != ignore_index 255"),
    ("no_match", "has a ground truth of the same file stem"),
])
def test_score_seg_user_mistakes_are_exit_2_errors(tmp_path, case, match):
    preds, labels, _ = tree(tmp_path)
    opts = ["--classes", ",".join(CLASSES)]
    if case == "no_classes":
        opts = []
    elif case == "both":
        opts += ["--dataset", "mfnet"]
    elif case == "unknown_dataset":
        opts = ["--dataset", "mfnett"]
    elif case == "root_classes":
        opts = ["--dataset", "folders"]
    elif case == "size":
        save(preds / "00001D.png", np.zeros((8, 10)))
    elif case == "pred_values":
        save(preds / "00001D.png", np.full((8, 12), 7))
    elif case == "label_values":
        save(labels / "00002N.png", np.full((8, 12), 9))
    elif case == "no_match":
        preds = tmp_path / "other"
        save(preds / "zzz.png", np.zeros((8, 12)))
    r = CliRunner().invoke(main, ["score", "seg", str(preds), str(labels), *opts])
    assert r.exit_code == 2, r.output
    assert r.output.startswith("error: ") and match in r.output and "Traceback" not in r.output
