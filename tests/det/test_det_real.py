"""The 20 real MSRS pairs with their three YOLO label variants (counts from shared/data/real/README.md)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from ivtune.tasks.det import build_det_dataset, build_det_transforms, collate_det

SHARED = Path(os.environ.get("IVTUNE_SHARED", Path(__file__).resolve().parents[2].parent / "shared"))
MSRS = SHARED / "data" / "real" / "msrs_det"

pytestmark = [
    pytest.mark.shared,
    pytest.mark.skipif(not MSRS.is_dir(), reason=f"{MSRS} not found (../shared is only in the dev/CI checkout)"),
]

# README: visible 53 (27 person, 1 bicycle, 25 car); infrared 113 (92, 3, 18); fusion 78 (56, 1, 21)
EXPECTED = {
    "visible": {"person": 27, "bicycle": 1, "car": 25},
    "infrared": {"person": 92, "bicycle": 3, "car": 18},
    "fusion": {"person": 56, "bicycle": 1, "car": 21},
}


@pytest.mark.parametrize("annotation", list(EXPECTED))
def test_msrs_counts(annotation):
    ds = build_det_dataset("msrs_det", MSRS, "all", annotation=annotation)
    assert len(ds) == 20 and ds.classes == ("person", "bicycle", "car")
    rep = ds.scan()
    assert rep.ok, rep.format()
    assert rep.boxes_per_class == EXPECTED[annotation]
    assert rep.conditions == {"day": 8, "night": 12}
    assert rep.dropped_boxes == 0
    coco = ds.to_coco()
    assert len(coco["annotations"]) == sum(EXPECTED[annotation].values())
    assert all(im["width"] == 640 and im["height"] == 480 for im in coco["images"])


def test_msrs_default_fusion_sample():
    ds = build_det_dataset("msrs_det", MSRS, "all")
    s = ds.load_raw(0)
    assert s["meta"]["name"] == "00004N" and s["meta"]["condition"] == "night" and s["meta"]["orig_size"] == (480, 640)
    assert s["vis"].shape == (480, 640, 3) and s["ir"].shape == (480, 640)
    # first fusion line: 0  0.8360721982758621  0.5727370689655172  0.08216594827586218  0.3035201149425288
    cx, cy = 0.8360721982758621 * 640, 0.5727370689655172 * 480
    w, h = 0.08216594827586218 * 640, 0.3035201149425288 * 480
    np.testing.assert_allclose(s["boxes"][0], [cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], rtol=1e-5)
    batch = collate_det([build_det_transforms(False, sizes=240, max_size=400)(ds.load_raw(i)) for i in range(2)])
    assert batch["vis"][0].shape == (3, 240, 320) and len(batch["boxes"]) == 2
