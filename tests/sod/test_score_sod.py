"""`ivtune score sod`: saliency maps against masks matched by stem, resized to the mask size, checked against
py_sod_metrics run directly on hand-made maps; ivtune predict's panels skipped, unmatched files named, errors."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import cv2
import numpy as np
import py_sod_metrics as psm
import pytest
from click.testing import CliRunner
from PIL import Image

from ivtune.cli import main
from ivtune.runner.score import score_sod
from ivtune.tasks.sod.metrics import METRIC_KEYS


def save(path: Path, arr: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr.astype(np.uint8), "L").save(path)
    return path


def hand_made(tmp_path: Path) -> tuple[Path, Path, list[tuple[np.ndarray, np.ndarray]]]:
    """Masks 40x50; maps: a blurred square (same size), a shifted square at half size (resized up), a noisy ramp at
    another aspect (resized), an empty-mask image; plus one map without mask and one mask without map."""
    rng = np.random.default_rng(0)
    gt = np.zeros((40, 50), np.uint8)
    gt[10:30, 12:32] = 255
    yy, xx = np.mgrid[:40, :50]
    blurred = np.clip(1 - (np.abs(yy - 19.5) / 12) ** 4 - (np.abs(xx - 21.5) / 12) ** 4, 0, 1) * 255
    half = np.zeros((20, 25))
    half[7:17, 8:18] = 230
    ry, rx = np.mgrid[:30, :64]
    ramp = np.clip(rx / 63 + rng.normal(0, 0.1, rx.shape), 0, 1) * 255
    maps = {"a": (blurred, gt), "b": (half, gt), "c": (ramp, gt), "d": (half, np.zeros_like(gt))}
    for name, (m, g) in maps.items():
        save(tmp_path / "maps" / f"{name}.png", np.round(m))
        save(tmp_path / "gt" / f"{name}.png", g)
    save(tmp_path / "maps" / "extra.png", np.zeros((40, 50)))
    save(tmp_path / "gt" / "lonely.png", gt)
    return tmp_path / "maps", tmp_path / "gt", [(np.round(m).astype(np.uint8), g) for m, g in maps.values()]


def reference(pairs) -> dict[str, float]:
    """py_sod_metrics on its own, the PySODEvalToolkit way: uint8 maps resized to the mask with cv2 bilinear."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ev = {"sm": psm.Smeasure(), "wfm": psm.WeightedFmeasure(), "mae": psm.MAE(), "fm": psm.Fmeasure(),
              "em": psm.Emeasure()}
    for pred, gt in pairs:
        if pred.shape != gt.shape:
            pred = cv2.resize(pred, dsize=(gt.shape[1], gt.shape[0]), interpolation=cv2.INTER_LINEAR)
        for e in ev.values():
            e.step(pred, gt)
    fm, em = ev["fm"].get_results()["fm"], ev["em"].get_results()["em"]
    return {"Sm": ev["sm"].get_results()["sm"], "wFm": ev["wfm"].get_results()["wfm"], "maxFm": fm["curve"].max(),
            "meanFm": fm["curve"].mean(), "adpFm": fm["adp"], "maxEm": em["curve"].max(),
            "meanEm": em["curve"].mean(), "adpEm": em["adp"], "MAE": ev["mae"].get_results()["mae"]}


def test_score_sod_matches_py_sod_metrics(tmp_path):
    maps, gts, pairs = hand_made(tmp_path)
    out = tmp_path / "out"
    r = CliRunner().invoke(main, ["score", "sod", str(maps), str(gts), "--json", "--out", str(out)])
    assert r.exit_code == 0, r.output
    obj = json.loads(r.output)
    ref = reference(pairs)
    assert {k: obj[k] for k in METRIC_KEYS} == pytest.approx(ref, rel=1e-9, abs=1e-12)
    assert 0.2 < obj["Sm"] < 0.9 and obj["num_images"] == 4  # a non-trivial set
    assert obj["unmatched"]["predictions_without_ground_truth"]["paths"] == [str(maps / "extra.png")]
    assert obj["unmatched"]["ground_truth_without_predictions"]["paths"] == [str(gts / "lonely.png")]
    payload = json.loads((out / "metrics.json").read_text())  # the same report as ivtune eval
    assert payload["gt"]["MAE"] == pytest.approx(ref["MAE"]) and len(payload["gt"]["curves"]["fm"]) == 256
    assert "| gt | 4 |" in (out / "metrics.md").read_text() and (out / "pr_curve.png").is_file()


def test_score_sod_skips_ivtune_panels_and_prints_text(tmp_path):
    maps, gts, pairs = hand_made(tmp_path)
    Image.fromarray(np.zeros((40, 150, 3), np.uint8)).save(maps / "a_panel.png")  # ivtune predict's VIS | IR | map
    res = score_sod(maps, gts, name="VT821")
    assert list(res.results) == ["VT821"] and res.summary["num_images"] == 4
    assert res.unmatched["predictions_without_ground_truth"] == [str(maps / "extra.png")]
    r = CliRunner().invoke(main, ["score", "sod", str(maps), str(gts), "--out", str(tmp_path / "o")])
    assert r.exit_code == 0, r.output
    assert "Sm " in r.output and "(4 images)" in r.output and "lonely.png" in r.output


def test_score_sod_errors_are_exit_2(tmp_path):
    maps, gts, _ = hand_made(tmp_path)
    (maps / "a.png").write_bytes(b"\x89PNG\r\n\x1a\nnot a png")
    r = CliRunner().invoke(main, ["score", "sod", str(maps), str(gts)])
    assert r.exit_code == 2 and r.output.startswith("error: ") and "a.png" in r.output, r.output
    empty = tmp_path / "empty"
    empty.mkdir()
    r = CliRunner().invoke(main, ["score", "sod", str(empty), str(gts)])
    assert r.exit_code == 2 and "No prediction images" in r.output, r.output
    r = CliRunner().invoke(main, ["score", "sod", str(tmp_path / "nope"), str(gts)])
    assert r.exit_code == 2 and "does not exist" in r.output
