"""What the tests of both detectors (``DetectionModel``, ``RTDETRDetector``) share: a learnable scene and the eval
output contract, and ``predict`` of a trained run on the real MSRS pairs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from ivtune.runner.predict import predict_pairs


def scene(h: int, w: int, boxes: list[list[float]], labels: list[int], seed: int = 0) -> tuple:
    """A bright rectangle per box in both images on a dark background: learnable in a few steps."""
    g = torch.Generator().manual_seed(seed)
    vis, ir = torch.full((3, h, w), -1.0) + 0.1 * torch.randn(3, h, w, generator=g), torch.full((1, h, w), -1.0)
    for x1, y1, x2, y2 in boxes:
        vis[:, int(y1):int(y2), int(x1):int(x2)] = 1.5
        ir[:, int(y1):int(y2), int(x1):int(x2)] = 2.0
    target = {"boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4), "labels": torch.tensor(labels),
              "ignore": torch.zeros(len(labels), dtype=torch.bool)}
    return vis, ir, target


def check_eval_output(model: Any, num_classes: int = 3) -> list[dict[str, torch.Tensor]]:
    """Eval on two pairs of different sizes: boxes per image, inside its unpadded image, 0-based labels; ``predict``
    on one pair keeps only scores above its threshold and leaves the model in eval mode. Returns the detections."""
    vis = [torch.randn(3, 70, 100), torch.randn(3, 96, 130)]
    ir = [torch.randn(1, 70, 100), torch.randn(1, 96, 130)]
    out = model(vis, ir)
    assert len(out) == 2
    for det, (h, w) in zip(out, [(70, 100), (96, 130)], strict=True):
        assert set(det) == {"boxes", "scores", "labels"}
        b = det["boxes"]
        assert b.shape[1] == 4 and len(b) > 0
        assert (b[:, 0] >= 0).all() and (b[:, 1] >= 0).all() and (b[:, 2] <= w).all() and (b[:, 3] <= h).all()
        assert det["labels"].min() >= 0 and det["labels"].max() < num_classes  # (a background slot is removed)
    single = model.predict(vis[0], ir[0], score_thresh=0.5)
    assert len(single) == 1 and (single[0]["scores"] >= 0.5).all()
    assert not model.training
    return out


def predict_real_msrs(run_dir: Path, msrs: Path, out: Path) -> dict[str, Any]:
    """``predict`` a run on the 20 real MSRS pairs at ``msrs``: one drawing per pair (visible | infrared, each at the
    original 640x480) and ``detections.json`` in the original sizes, which is returned."""
    written = predict_pairs(run_dir, msrs / "vis", msrs / "ir", out)
    assert len(written) == 20 and written[0].name == "00004N_det.png"
    assert all(Image.open(p).size == (1280, 480) for p in written)
    payload = json.loads((out / "detections.json").read_text())
    assert len(payload["images"]) == 20 and all((im["height"], im["width"]) == (480, 640) for im in payload["images"])
    return payload
