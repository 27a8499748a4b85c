"""ivtune.Predictor: the run's own evaluation path for every task, any input type and size, typed results."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import ivtune
from ivtune.errors import InputShapeError
from ivtune.runner.predictor import Predictor, as_ir
from ivtune.runner.run import load_run_model, resolve, train
from ivtune.tasks.det.task import DetPrediction, rescale_boxes
from ivtune.tasks.det.task import build_transforms as det_transforms
from ivtune.tasks.seg.task import SegPrediction, predict_logits
from ivtune.tasks.seg.task import build_transforms as seg_transforms
from ivtune.tasks.sod.task import SODPrediction, predict_saliency, to_gt_size
from ivtune.tasks.sod.task import build_transforms as sod_transforms

REPO = Path(__file__).resolve().parents[2]
CONFIGS = {"seg": REPO / "configs" / "seg" / "synthetic_tiny.yaml",
           "sod": REPO / "configs" / "sod" / "synthetic_tiny.yaml",
           "det": REPO / "configs" / "det" / "synthetic_tiny_fcos.yaml"}


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("predictor")
    return {task: train(cfg, [f"train.output_dir={tmp}", f"train.run_name={task}", "train.max_steps=2",
                              "train.val_every=2", "train.checkpoint_every=2", "data.num_samples=4",
                              "data.batch_size=2"])
            for task, cfg in CONFIGS.items()}


def _pair(h: int = 70, w: int = 90, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)  # 70x90: not a multiple of the patch 16, non-square
    return rng.integers(0, 256, (h, w, 3), dtype=np.uint8), rng.integers(0, 256, (h, w), dtype=np.uint8)


def _raw(rgb, thermal):
    return {"vis": rgb, "ir": thermal, "mask": np.zeros(rgb.shape[:2], np.int64), "boxes": np.zeros((0, 4), np.float32),
            "labels": np.zeros(0, np.int64), "ignore": np.zeros(0, bool), "meta": {"orig_size": rgb.shape[:2]}}


@pytest.mark.parametrize("task", ["seg", "sod", "det"])
def test_inputs_are_the_runs_evaluation_transform(runs, task):
    p = Predictor.from_run(runs[task])
    cfg, _ = resolve(runs[task])
    rgb, thermal = _pair()
    transform = {"seg": lambda: seg_transforms(cfg, False, 255), "sod": lambda: sod_transforms(cfg, False),
                 "det": lambda: det_transforms(cfg, False)}[task]()
    ref = transform(_raw(rgb, thermal), rng=0)
    vis, ir, ctx = p.prepare(rgb, thermal)
    h, w = ctx.input_size
    assert (h, w) == tuple(ref["vis"].shape[-2:])
    assert vis.shape[-2] % p.spec.pad_multiple == 0 and vis.shape[-1] % p.spec.pad_multiple == 0
    assert torch.equal(vis[0, :, :h, :w], ref["vis"]) and torch.equal(ir[0, :, :h, :w], ref["ir"])
    assert float(vis[..., h:, :].abs().sum() + vis[..., w:].abs().sum()) == 0.0  # zero padding = the mean colour


def test_segmentation_equals_the_evaluation_path(runs):
    p = Predictor.from_run(runs["seg"])
    cfg, run_dir = resolve(runs["seg"])
    module = load_run_model(cfg, run_dir)
    rgb, thermal = _pair()
    s = seg_transforms(cfg, False, 255)(_raw(rgb, thermal), rng=0)
    with torch.no_grad():
        logits = predict_logits(module.model, s["vis"][None], s["ir"][None])
    r = p.predict(rgb, thermal, probabilities=True)
    assert isinstance(r, SegPrediction) and r.mask.shape == (70, 90) and r.classes == tuple(module.classes)
    np.testing.assert_array_equal(r.mask, logits.argmax(1)[0].numpy())
    assert r.probabilities.shape == (len(module.classes), 70, 90)
    np.testing.assert_allclose(r.probabilities.sum(0), 1.0, atol=1e-5)
    np.testing.assert_array_equal(r.probabilities.argmax(0), r.mask)
    assert p.predict(rgb, thermal).probabilities is None


def test_sod_equals_the_evaluation_path(runs):
    p = Predictor.from_run(runs["sod"])
    cfg, run_dir = resolve(runs["sod"])
    module = load_run_model(cfg, run_dir)
    rgb, thermal = _pair()
    s = sod_transforms(cfg, False)(_raw(rgb, thermal), rng=0)
    with torch.no_grad():
        ref = to_gt_size(predict_saliency(module.model, s["vis"][None], s["ir"][None])[0], (70, 90))
    r = p.predict(rgb, thermal)
    assert isinstance(r, SODPrediction) and r.saliency.shape == (70, 90)
    np.testing.assert_array_equal(r.saliency, ref)
    assert 0.0 <= r.saliency.min() < 0.1 and 0.9 < r.saliency.max() <= 1.0  # min-max normalised, then resized


def test_detection_equals_the_models_predict(runs):
    p = Predictor.from_run(runs["det"])
    cfg, run_dir = resolve(runs["det"])
    module = load_run_model(cfg, run_dir)
    rgb, thermal = _pair(100, 150)
    s = det_transforms(cfg, False)(_raw(rgb, thermal), rng=0)
    det = module.model.predict(s["vis"], s["ir"])[0]
    boxes = rescale_boxes(det["boxes"], s["meta"])
    r = p.predict(rgb, thermal)
    assert isinstance(r, DetPrediction) and len(r.labels) == len(det["labels"]) > 0
    np.testing.assert_allclose(r.boxes, boxes.numpy(), atol=1e-4)
    np.testing.assert_allclose(r.scores, det["scores"].numpy(), atol=1e-6)
    np.testing.assert_array_equal(r.labels, det["labels"].numpy())
    assert r.boxes[:, 0::2].max() <= 150 and r.boxes[:, 1::2].max() <= 100  # input pixels
    kept = p.predict(rgb, thermal, score_thresh=float(np.median(r.scores)))
    assert 0 < len(kept.scores) < len(r.scores) and kept.scores.min() >= np.median(r.scores)


def test_every_input_type_gives_the_same_result(runs, tmp_path):
    p = ivtune.Predictor.from_run(runs["seg"])  # the lazy public name
    rgb, thermal = _pair()
    Image.fromarray(rgb).save(tmp_path / "v.png")
    Image.fromarray(thermal).save(tmp_path / "i.png")
    ref = p.predict(rgb, thermal).mask
    vis_t = torch.from_numpy(rgb).permute(2, 0, 1)
    variants = [
        (Image.fromarray(rgb), Image.fromarray(thermal)),
        (tmp_path / "v.png", str(tmp_path / "i.png")),
        (vis_t, torch.from_numpy(thermal)[None]),
        (vis_t.float() / 255, torch.from_numpy(thermal).float() / 255),
        (rgb, np.repeat(thermal[..., None], 3, axis=2)),  # 3-channel IR: converted to grey
    ]
    for vis, ir in variants:
        np.testing.assert_array_equal(p.predict(vis, ir).mask, ref)
    batch = p.predict([rgb, _pair(64, 48, 1)[0]], [thermal, _pair(64, 48, 1)[1]])  # a list of pairs, any sizes
    assert [b.mask.shape for b in batch] == [(70, 90), (64, 48)]
    np.testing.assert_array_equal(batch[0].mask, ref)
    stacked = p.predict(np.stack([rgb, rgb]), np.stack([thermal, thermal]))  # a 4-D batch
    assert len(stacked) == 2 and all(np.array_equal(b.mask, ref) for b in stacked)


def test_bad_inputs_name_the_problem(runs):
    p = Predictor.from_run(runs["seg"])
    rgb, thermal = _pair()
    with pytest.raises(InputShapeError, match="vis is 70x90 but ir is 70x80"):
        p.predict(rgb, thermal[:, :80])
    with pytest.raises(InputShapeError, match="divide 0-255 values by 255"):
        p.predict(rgb.astype(np.float32), thermal)
    with pytest.raises(InputShapeError, match=r"\(H, W, 3\) RGB"):
        p.predict(np.zeros((70, 90, 4), np.uint8), thermal)
    with pytest.raises(InputShapeError, match="one infrared image per visible image"):
        p.predict([rgb, rgb], [thermal])


def test_ir_luma_matches_pil():
    rgb = _pair()[0]
    ours = as_ir(rgb)[0].numpy() * 255
    pil = np.asarray(Image.fromarray(rgb).convert("L"), dtype=np.float32)
    assert np.abs(ours - pil).max() <= 1.0  # PIL rounds each pixel to an integer
