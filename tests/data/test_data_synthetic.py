"""Synthetic IR-VIS scenes: deterministic, labelled, and VIS-blind at night while IR still sees the objects."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ivtune.data import SYNTHETIC_CLASSES, make_scene, write_synthetic_dataset
from ivtune.data.scenes import OBJECT_CLASSES, synthetic_conditions
from ivtune.errors import ConfigError
from ivtune.tasks.seg import build_seg_dataset
from ivtune.tasks.seg.datasets.synthetic import SyntheticSegDataset

PERSON, CAR, BIKE = (SYNTHETIC_CLASSES.index(c) for c in ("person", "car", "bike"))


def test_deterministic_by_seed():
    a, b = make_scene(123, condition="night"), make_scene(np.random.default_rng(123), condition="night")
    for key in ("vis", "ir", "mask", "saliency"):
        assert np.array_equal(getattr(a, key), getattr(b, key))
    assert a.boxes == b.boxes
    c = make_scene(124, condition="night")
    assert not np.array_equal(a.vis, c.vis) and not np.array_equal(a.mask, c.mask)


def test_scene_contents():
    scenes = [make_scene(s, 128, 160, "day") for s in range(12)]
    for sc in scenes:
        assert sc.vis.shape == (128, 160, 3) and sc.ir.shape == (128, 160) and sc.mask.dtype == np.uint8
        assert sc.mask.max() < len(SYNTHETIC_CLASSES)
        assert np.array_equal(sc.saliency == 255, np.isin(sc.mask, OBJECT_CLASSES))
        for cls, x1, y1, x2, y2 in sc.boxes:
            assert cls in OBJECT_CLASSES and 0 <= x1 < x2 <= 160 and 0 <= y1 < y2 <= 128
            assert (sc.mask[y1:y2, x1:x2] == cls).any()
    present = [set(np.unique(sc.mask)) for sc in scenes]
    for cls in (PERSON, CAR, BIKE):
        assert sum(cls in p for p in present) >= 10, SYNTHETIC_CLASSES[cls]
    assert all({0, 1, 2} <= p for p in present)  # background, road and building in every scene


def _stats(condition: str) -> tuple[float, float, float]:
    """Mean over scenes of: VIS grey std, |VIS object - rest| and IR object - rest (grey levels)."""
    out = []
    for seed in range(8):
        sc = make_scene(seed, 128, 160, condition)
        grey = sc.vis.astype(np.float64).mean(-1)
        obj = np.isin(sc.mask, OBJECT_CLASSES)
        out.append((grey.std(), abs(grey[obj].mean() - grey[~obj].mean()), sc.ir[obj].mean() - sc.ir[~obj].mean()))
    return tuple(np.mean(out, 0))


def test_night_and_fog_hide_objects_from_vis_not_ir():
    day, night, fog = _stats("day"), _stats("night"), _stats("fog")
    assert day[0] > 25 and day[1] > 20  # daylight: contrast, objects stand out in colour
    for vis_std, vis_obj, _ in (night, fog):
        assert vis_std < 0.35 * day[0]  # dark / washed-out visible image
        assert vis_obj < 6  # objects at most a few grey levels away from the rest in VIS
    assert night[2] > 70 and night[2] > 1.5 * day[2]  # warm objects bright on a cool night background
    assert fog[2] > 25 and day[2] > 25


def test_many_scenes_generate():
    scenes = [make_scene(s, 256, 320, ("day", "night", "fog")[s % 3]) for s in range(200)]
    assert len(scenes) == 200 and all(sc.vis.shape == (256, 320, 3) for sc in scenes)


def test_dataset_items_are_fixed_per_index():
    ds = SyntheticSegDataset(6, seed=5, height=64, width=80, night_fraction=0.5, fog_fraction=1 / 3)
    assert sorted(ds.conditions) == ["day", "fog", "fog", "night", "night", "night"]
    again = SyntheticSegDataset(6, seed=5, height=64, width=80, night_fraction=0.5, fog_fraction=1 / 3)
    for i in (4, 0, 4):
        a, b = ds[i], again[i]
        assert torch.equal(a["vis"], b["vis"]) and torch.equal(a["mask"], b["mask"])
        assert a["meta"]["name"].endswith({"day": "D", "night": "N", "fog": "F"}[a["meta"]["condition"]])
    val = SyntheticSegDataset(6, seed=5, height=64, width=80, split="val")
    assert not torch.equal(ds[0]["vis"], val[0]["vis"])
    with pytest.raises(ConfigError, match="night_fraction"):
        synthetic_conditions(4, 0, "train", 0.7, 0.5)


def test_write_then_load_through_folders(tmp_path):
    root = write_synthetic_dataset(tmp_path / "syn", {"train": 4, "val": 2}, seed=3, height=48, width=64)
    disk = build_seg_dataset("folders", root, "train")
    memory = build_seg_dataset("synthetic", None, "train", num_samples=4, seed=3, height=48, width=64)
    assert disk.classes == SYNTHETIC_CLASSES and len(disk) == 4
    assert [r.name for r in disk.records] == sorted(r.name for r in memory.records)
    by_name = {r.name: i for i, r in enumerate(memory.records)}
    for i, rec in enumerate(disk.records):
        a, b = disk[i], memory[by_name[rec.name]]
        assert all(torch.equal(a[k], b[k]) for k in ("vis", "ir", "mask"))
        assert a["meta"]["condition"] == b["meta"]["condition"]
        boxes = (root / "train" / "boxes" / f"{rec.name}.txt").read_text().split("\n")
        assert len([ln for ln in boxes if ln]) == len(memory.scene(by_name[rec.name]).boxes)
    assert len(build_seg_dataset("folders", root, "val")) == 2
    assert disk.scan().ok
