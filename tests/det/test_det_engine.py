"""Detection through the engine: train a few steps on synthetic scenes, checkpoint, evaluate, predict; benchmark."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ivtune.checkpoint import trainable_state_dict
from ivtune.errors import CheckpointMismatchError
from ivtune.runner import load_config
from ivtune.runner.predict import predict_pairs
from ivtune.runner.run import evaluate, load_run_model, train
from ivtune.tasks.det.task import DetTask, format_results
from tests.det.detector_tester import predict_real_msrs
from tests.helpers import SHARED, requires_shared, retarget
from tests.task_tester import (
    assert_loads_trained,
    assert_refuses_missing_tensor,
    assert_run_dir_complete,
    assert_same_weights,
    crash_run,
    ddp_evaluate,
    run_weights,
)

REPO = Path(__file__).resolve().parents[2]
TINY = REPO / "configs" / "det" / "synthetic_tiny_fcos.yaml"


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("det")
    return train(TINY, [f"train.output_dir={tmp}", "train.run_name=run", "train.max_steps=3", "train.val_every=3",
                        "train.checkpoint_every=3", "train.log_every=1", "data.num_samples=6",
                        "data.batch_size=2"])


def test_train_writes_trainable_only_checkpoints(run_dir):
    assert_run_dir_complete(run_dir)
    assert json.loads((run_dir / "dataset_info.json").read_text()) == {"classes": ["person", "car", "bike"]}
    ckpt = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False)
    assert ckpt["global_step"] == 3 and ckpt["ivtune"]["detector"] == "fcos"
    cfg = load_config(run_dir / "config.yaml")
    fresh = DetTask(cfg, ["person", "car", "bike"])
    expected = set(trainable_state_dict(fresh))
    assert set(ckpt["state_dict"]) == expected == set(run_weights(run_dir))
    assert not any(".block." in k for k in expected)  # no frozen timm weight
    assert any(k.startswith("model.detector.head.") for k in expected) and any(".neck.fpn." in k for k in expected)
    # the engine loads them strictly; the trained head differs from a fresh one
    assert_loads_trained(cfg, run_dir, fresh)
    # a config whose FCOS box sides differ from the run's: the error names the option to set
    relu = load_config(run_dir / "config.yaml", ["model.head_kwargs.fcos_box_sides=relu"])
    with pytest.raises(CheckpointMismatchError, match=r"unexpected \(1\): model\.detector\.head\.regression_head\."
                                                      r"scales.*fcos_box_sides=relu"):
        load_run_model(relu, run_dir)
    assert_refuses_missing_tensor(fresh, ckpt)


def test_evaluate_reports_per_condition_and_writes_report(run_dir):
    results = evaluate(run_dir)
    assert {"all", "day", "night"} <= set(results)
    for res in results.values():
        assert 0.0 <= res["mAP"] <= 100.0 and 0.0 <= res["AP50"] <= 100.0
    assert results["all"]["num_images"] == 6  # every test image counted once (synthetic: 6 per split here)
    out = run_dir / "eval" / "test"
    for name in ("metrics.json", "metrics.md", "pr_curves.png", "pr_curves_day.png", "pr_curves_night.png"):
        assert (out / name).is_file(), name
    assert "person" in (out / "metrics.md").read_text()
    assert "mAP" in format_results(results)


def test_predict_writes_side_by_side_images_and_coco_json(run_dir, tmp_path):
    rng = np.random.default_rng(0)
    (tmp_path / "vis").mkdir()
    (tmp_path / "ir").mkdir()
    for name, (h, w) in (("a", (100, 150)), ("b", (90, 70))):  # sizes the transform resizes, non-square
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(tmp_path / "vis" / f"{name}.png")
        Image.fromarray(rng.integers(0, 255, (h, w), dtype=np.uint8)).save(tmp_path / "ir" / f"{name}.png")
    out = tmp_path / "out"
    written = predict_pairs(run_dir, tmp_path / "vis", tmp_path / "ir", out)
    assert [p.name for p in written] == ["a_det.png", "b_det.png"]
    assert Image.open(written[0]).size == (300, 100)  # visible | infrared at the original size
    payload = json.loads((out / "detections.json").read_text())
    assert [c["name"] for c in payload["categories"]] == ["person", "car", "bike"]
    assert len(payload["images"]) == 2 and payload["detections"]
    sizes = {im["id"]: (im["height"], im["width"]) for im in payload["images"]}
    for d in payload["detections"]:
        h, w = sizes[d["image_id"]]
        x, y, bw, bh = d["bbox"]
        assert 1 <= d["category_id"] <= 3 and 0 <= x and 0 <= y and x + bw <= w + 0.01 and y + bh <= h + 0.01


def test_dataset_options_and_transform_keys_are_separate_typed_keys():
    d = load_config(TINY).data
    assert d.dataset_options() == {"num_samples": 16, "seed": 0, "height": 128, "width": 160, "night_fraction": 0.5}
    assert (d.train_sizes, d.test_size, d.max_size, d.crop) == ([112, 128, 144], 128, 224, None)


@pytest.mark.parametrize("name", sorted(p.name for p in (REPO / "configs" / "det").glob("*.yaml")))
def test_det_configs_load(name):
    cfg = load_config(REPO / "configs" / "det" / name)
    assert cfg.task == "det" and cfg.model.head in ("fcos", "fasterrcnn", "retinanet", "rtdetr")
    if "swin_l" in name:  # the authors' optimiser: AdamW, wd 1e-4, grad-norm clip 0.1, head lr 1e-4 = 10 x backbone
        o = cfg.optim
        assert (o.name, o.weight_decay, o.grad_clip_norm, o.lr * o.head_lr_mult) == ("adamw", 1e-4, 0.1, 1e-4)


@pytest.mark.slow  # a Python process of its own (~10 s to import torch, timm and Lightning on 2 cores)
def test_benchmark_smoke(tmp_path):
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "detection.py"), "--smoke", "--device", "cpu",
                           "--out", str(tmp_path)], capture_output=True, text=True, timeout=300, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "iv-tuning" in proc.stdout and "vis-only-full" in proc.stdout
    (result,) = tmp_path.glob("detection_*_smoke.json")
    report = json.loads(result.read_text())
    methods = report["methods"]
    assert set(methods) == {"iv-tuning", "iv-tuning:zeros", "vis-only-full"}
    assert {"cpu", "cores", "torch"} <= set(report["machine"]) and report["machine"]["gpu"] is None  # --device cpu
    assert all(set(m["loss_last_parts"]) == {"classification", "bbox_regression", "bbox_ctrness"}
               for m in methods.values())
    assert "Machine: " in result.with_suffix(".md").read_text()
    assert all(m["steps"] == 2 and "night" in m["results"] for m in methods.values())


def _tiny(out: Path, *extra: str) -> list[str]:
    return [f"train.output_dir={out}", "train.run_name=run", "train.val_every=100", "train.log_every=1",
            "data.num_samples=6", "data.batch_size=2", *extra]


def test_resume_after_a_crash_matches_an_uninterrupted_run(tmp_path):
    common = ["train.max_steps=5", "train.checkpoint_every=2"]
    straight = train(TINY, _tiny(tmp_path / "a", *common))
    crashed = crash_run(TINY, _tiny(tmp_path / "b", *common), tmp_path / "b" / "run", crash_at=3, last_checkpoint=2)
    assert_same_weights(straight, train(crashed, resume=True))


@pytest.mark.slow  # two Python processes (~10 s each to import torch, timm and Lightning on 2 cores)
def test_ddp_evaluation_counts_every_image_once(run_dir, tmp_path):
    # 5 test images on 2 gloo ranks: rank 1 gets one padding image, which must not be counted; the gathered
    # detections must give the one-process COCO numbers
    extra = ["data.num_samples=5", "data.eval_batch_size=2"]
    one = evaluate(run_dir, overrides=extra, out_dir=tmp_path / "one")
    two = ddp_evaluate(run_dir, extra, tmp_path)["results"]
    assert set(two) == set(one)
    for cond in one:
        assert two[cond]["num_images"] == one[cond]["num_images"], cond
        for k in ("mAP", "AP50", "AP75"):
            assert two[cond][k] == pytest.approx(one[cond][k], abs=1e-6), (cond, k)
    assert two["all"]["num_images"] == 5


MSRS = SHARED / "data" / "real" / "msrs_det"
@pytest.mark.parametrize("annotation, counts", [
    ("fusion", "Boxes: 78 (person 56, bicycle 1, car 21)"),
    ("infrared", "Boxes: 113 (person 92, bicycle 3, car 18)"),
], ids=["fusion", "infrared"])
@pytest.mark.shared
@requires_shared(MSRS)
def test_cli_data_check_on_real_msrs_pairs(annotation, counts, tmp_path):
    from click.testing import CliRunner

    from ivtune.cli import main

    sets = [f"data.root={MSRS}", f"data.annotation={annotation}"]
    args = ["data", "check", str(retarget(TINY, "msrs_det", tmp_path)), "--split", "all",
            *(a for s in sets for a in ("--set", s))]
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 0, res.output
    assert "20 pairs, 20 ok (day 8, night 12)" in res.output and counts in res.output


@pytest.mark.shared
@requires_shared(MSRS)
def test_predict_on_real_msrs_pairs(run_dir, tmp_path):
    predict_real_msrs(run_dir, MSRS, tmp_path)
