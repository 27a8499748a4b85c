"""SOD metrics: sanity values, agreement with py_sod_metrics on hand-made maps, merging per-rank results, report."""

from __future__ import annotations

import json
import warnings

import numpy as np
import py_sod_metrics as psm
import pytest

from ivtune.tasks.sod.metrics import METRIC_KEYS, SODMetrics, write_sod_report


def _gt(h=40, w=50):
    gt = np.zeros((h, w), bool)
    gt[10:30, 12:32] = True
    return gt


def _maps():
    """Hand-made maps: a blurred square, a shifted square, a noisy ramp; with their ground truths."""
    rng = np.random.default_rng(0)
    gt = _gt()
    yy, xx = np.mgrid[:40, :50]
    blurred = np.clip(1 - (np.abs(yy - 19.5) / 12) ** 4 - (np.abs(xx - 21.5) / 12) ** 4, 0, 1)
    shifted = np.zeros((40, 50))
    shifted[14:34, 16:36] = 0.9
    ramp = np.clip(xx / 49 + rng.normal(0, 0.1, xx.shape), 0, 1)
    return [(blurred, gt), (shifted, gt), (ramp, gt), (shifted, np.zeros_like(gt))]


def test_perfect_and_empty_maps():
    gt = _gt()
    m = SODMetrics()
    m.update(gt.astype(float), gt)
    r = m.compute()
    assert r["Sm"] == pytest.approx(1.0) and r["MAE"] == 0.0 and r["wFm"] == pytest.approx(1.0)
    assert r["maxFm"] == pytest.approx(1.0) and r["maxEm"] == pytest.approx(1.0, abs=1e-3)
    empty = SODMetrics()
    empty.update(np.zeros(gt.shape), gt)
    r = empty.compute()
    assert r["Sm"] == pytest.approx(0.4)  # only the region term of the background remains
    assert r["MAE"] == pytest.approx(gt.mean())  # 400 / 2000 = 0.2
    assert r["wFm"] == 0.0 and r["meanFm"] < 0.01 and r["meanEm"] < 0.3


def test_values_match_py_sod_metrics():
    ours = SODMetrics()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = {"sm": psm.Smeasure(), "wfm": psm.WeightedFmeasure(), "mae": psm.MAE(), "fm": psm.Fmeasure(),
               "em": psm.Emeasure()}
    for pred, gt in _maps():
        u8 = np.round(pred * 255).astype(np.uint8)
        ours.update((u8 - u8.min()) / (u8.max() - u8.min()), gt)  # the toolbox min-max normalises each map
        u8_gt = gt.astype(np.uint8) * 255
        for ev in ref.values():
            ev.step(u8, u8_gt)
    r = ours.compute()
    fm, em = ref["fm"].get_results(), ref["em"].get_results()
    assert r["Sm"] == pytest.approx(ref["sm"].get_results()["sm"], abs=2e-3)
    assert r["wFm"] == pytest.approx(ref["wfm"].get_results()["wfm"], abs=2e-3)
    assert r["MAE"] == pytest.approx(ref["mae"].get_results()["mae"], abs=2e-3)
    assert r["maxFm"] == pytest.approx(fm["fm"]["curve"].max(), abs=5e-3)
    assert r["adpFm"] == pytest.approx(fm["fm"]["adp"], abs=5e-3)
    assert r["meanEm"] == pytest.approx(em["em"]["curve"].mean(), abs=5e-3)
    assert r["num_images"] == 4 and len(r["curves"]["precision"]) == 256
    # hand-checked: MAE of the shifted square (0.9 on 20x20 moved by 4, 4) against the square
    one = SODMetrics()
    pred, gt = _maps()[1]
    one.update(pred, gt)
    inter = 16 * 16
    expected = (inter * 0.1 + (400 - inter) * 0.9 + (400 - inter) * 1.0) / 2000
    assert one.compute()["MAE"] == pytest.approx(expected)


def test_merge_of_rank_states_equals_one_process():
    maps = _maps()
    whole, r0, r1 = SODMetrics(), SODMetrics(), SODMetrics()
    for i, (pred, gt) in enumerate(maps):
        whole.update(pred, gt)
        (r0 if i % 2 == 0 else r1).update(pred, gt)
    merged = SODMetrics()
    merged.merge([r0.state(), r1.state()])
    a, b = whole.compute(), merged.compute()
    for k in METRIC_KEYS:
        assert a[k] == pytest.approx(b[k])
    merged.all_gather()  # not distributed: a no-op
    assert len(merged) == 4


def test_report_files(tmp_path):
    m = SODMetrics()
    for pred, gt in _maps():
        m.update(pred, gt)
    files = write_sod_report({"vt821/test": m.compute(), "vt1000/test": m.compute()}, tmp_path)
    assert [f.name for f in files] == ["metrics.json", "metrics.md", "pr_curve.png"]
    data = json.loads((tmp_path / "metrics.json").read_text())
    assert set(data) == {"vt821/test", "vt1000/test"} and "Sm" in data["vt821/test"]
    md = (tmp_path / "metrics.md").read_text()
    assert "| vt821/test | 4 |" in md and "MAE" in md
    assert (tmp_path / "pr_curve.png").read_bytes()[:4] == b"\x89PNG"
