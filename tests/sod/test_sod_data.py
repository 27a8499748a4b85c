"""SOD datasets: every layout on a tiny tree written here, the sample contract, bad input, transforms."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ivtune.data import write_synthetic_dataset
from ivtune.errors import ConfigError, DataError
from ivtune.tasks.sod.datasets import SyntheticSaliencyDataset, build_sod_dataset
from ivtune.tasks.sod.transforms import build_sod_transforms


def _write(folder: Path, names, size=(30, 40), gt_size=None, gt_values=(0, 255), ext=".png", skip=()):
    """RGB/T/GT triples under ``folder`` (role folders RGB, T, GT); ``skip`` lists (role, name) to leave out."""
    rng = np.random.default_rng(0)
    for role in ("RGB", "T", "GT"):
        (folder / role).mkdir(parents=True, exist_ok=True)
    for n in names:
        h, w = size
        if ("RGB", n) not in skip:
            Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(folder / "RGB" / f"{n}{ext}")
        if ("T", n) not in skip:
            Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(folder / "T" / f"{n}{ext}")
        gh, gw = gt_size or size
        gt = np.full((gh, gw), gt_values[0], np.uint8)
        gt[gh // 4: gh // 2, gw // 4: gw // 2] = gt_values[1]
        if ("GT", n) not in skip:
            Image.fromarray(gt).save(folder / "GT" / f"{n}.png")


def test_vt5000_splits_and_contract(tmp_path):
    _write(tmp_path / "Train", [str(i) for i in range(10)])
    _write(tmp_path / "Test", ["a", "b", "c"], ext=".jpg")
    test = build_sod_dataset("vt5000", tmp_path, "test")
    assert len(test) == 3 and test.name == "vt5000/test"
    s = test[0]
    assert s["vis"].shape == (3, 30, 40) and s["ir"].shape == (1, 30, 40)
    assert s["mask"].dtype == torch.float32 and s["mask"].shape == (1, 30, 40)
    assert set(s["mask"].unique().tolist()) == {0.0, 1.0}
    assert s["meta"]["orig_size"] == (30, 40) and s["meta"]["gt_path"].endswith("GT/a.png")
    kw = {"val_fraction": 0.2, "val_seed": 3}
    train, val = (build_sod_dataset("vt5000", tmp_path, sp, **kw) for sp in ("train", "val"))
    assert (len(train), len(val)) == (8, 2)
    names = {r.name for r in train.records}, {r.name for r in val.records}
    assert not names[0] & names[1] and len(names[0] | names[1]) == 10
    again = build_sod_dataset("vt5000", tmp_path, "val", **kw)
    assert [r.name for r in again.records] == [r.name for r in val.records]  # fixed by the seed
    assert len(build_sod_dataset("vt5000", tmp_path, "trainval", **kw)) == 10
    with pytest.raises(ConfigError, match="val_fraction"):
        build_sod_dataset("vt5000", tmp_path, "val")


@pytest.mark.parametrize("name", ["vt1000", "vt821"])
def test_flat_test_sets(tmp_path, name):
    _write(tmp_path, ["x1", "x2"])
    ds = build_sod_dataset(name, tmp_path, "test")
    assert len(ds) == 2 and ds.name == f"{name}/test" and ds.scan().ok
    with pytest.raises(ConfigError, match="Valid splits: test"):
        build_sod_dataset(name, tmp_path, "train")


def test_folders_and_synthetic_agree(tmp_path):
    root = write_synthetic_dataset(tmp_path / "syn", {"train": 3, "test": 2}, seed=5, height=40, width=48)
    folders = build_sod_dataset("folders", root, "test", keep_gt=True)
    synth = build_sod_dataset("synthetic", None, "test", num_samples=2, seed=5, height=40, width=48, keep_gt=True)
    for a, b in zip(folders, synth, strict=True):
        assert torch.equal(a["vis"], b["vis"]) and torch.equal(a["ir"], b["ir"])
        assert torch.equal(a["mask"], b["mask"]) and a["mask"].sum() > 0
        assert np.array_equal(a["meta"]["gt"], b["meta"]["gt"])
    assert isinstance(synth, SyntheticSaliencyDataset)
    # deterministic by seed and index; splits are different streams
    other = build_sod_dataset("synthetic", None, "test", num_samples=2, seed=5, height=40, width=48)
    assert torch.equal(other[1]["vis"], synth[1]["vis"])
    val = build_sod_dataset("synthetic", None, "val", num_samples=2, seed=5, height=40, width=48)
    assert not torch.equal(val[0]["vis"], synth[0]["vis"])
    carved = build_sod_dataset("folders", root, "val", val_fraction=0.34)
    assert len(carved) == 1
    with pytest.raises(ConfigError, match="not found"):
        build_sod_dataset("folders", root, "val")


def test_gt_size_mismatch_names_both_files_or_resizes(tmp_path):
    _write(tmp_path, ["p"], size=(30, 40), gt_size=(15, 20))
    ds = build_sod_dataset("vt821", tmp_path, "test")
    with pytest.raises(DataError) as e:
        ds[0]
    assert str(tmp_path / "GT" / "p.png") in str(e.value) and str(tmp_path / "RGB" / "p.png") in str(e.value)
    report = build_sod_dataset("vt821", tmp_path, "test", strict=False).scan()
    assert not report.ok and "gt_size_mismatch" in report.by_kind()
    ok = build_sod_dataset("vt821", tmp_path, "test", resize_gt=True, keep_gt=True)
    s = ok[0]
    assert s["mask"].shape == (1, 30, 40) and s["meta"]["gt"].shape == (30, 40)
    assert s["mask"].sum() == pytest.approx(8 * 10, abs=20)  # the square [7:15, 10:20] scaled x2
    assert ok.scan().ok


def test_missing_thermal_listed(tmp_path):
    _write(tmp_path / "Train", ["1", "2", "3"], skip={("T", "1"), ("T", "3")})
    with pytest.raises(DataError) as e:
        build_sod_dataset("vt5000", tmp_path, "trainval")
    msg = str(e.value)
    assert "2 file(s) missing" in msg and str(tmp_path / "Train" / "T" / "1.png") in msg and "T/3.png" in msg
    report = build_sod_dataset("vt5000", tmp_path, "trainval", strict=False).scan()
    assert report.num_ok == 1 and len(report.by_kind()["missing"]) == 2


def test_non_binary_gt_thresholded(tmp_path):
    _write(tmp_path, ["g"], gt_values=(100, 200))
    gt = np.asarray(Image.open(tmp_path / "GT" / "g.png"))
    assert set(np.unique(gt)) == {100, 200}
    s = build_sod_dataset("vt1000", tmp_path, "test", keep_gt=True)[0]
    assert set(np.unique(s["meta"]["gt"])) == {0, 1}
    assert np.array_equal(s["meta"]["gt"], (gt > 128).astype(np.uint8))
    assert torch.equal(s["mask"][0], torch.from_numpy(gt > 128).float())


def test_unknown_option_and_dataset():
    with pytest.raises(ConfigError, match="val_fraction"):
        build_sod_dataset("synthetic", None, "train", val_fraction=0.1)
    with pytest.raises(ConfigError, match="vt5000"):
        build_sod_dataset("vt999", "x", "test")


def test_transforms_train_and_eval():
    raw = SyntheticSaliencyDataset(1, seed=1, height=70, width=90).load_raw(0)
    train = build_sod_transforms(True, size=(48, 64))
    a, b = train(raw, rng=7), train(raw, rng=7)
    assert torch.equal(a["vis"], b["vis"]) and torch.equal(a["mask"], b["mask"])  # seeded
    assert a["vis"].shape == (3, 48, 64) and a["ir"].shape == (3, 48, 64) and a["mask"].shape == (1, 48, 64)
    assert set(a["mask"].unique().tolist()) <= {0.0, 1.0}
    assert any(not torch.equal(train(raw, rng=s)["mask"], a["mask"]) for s in range(8))  # geometry moves the mask
    ev = build_sod_transforms(False, size=(48, 64))(raw)
    ir = torch.from_numpy(raw["ir"]).float()[None, None] / 255
    ref = torch.nn.functional.interpolate(ir, size=(48, 64), mode="bilinear", align_corners=False, antialias=True)
    assert torch.allclose(ev["ir"][0], ref[0, 0], atol=1e-6)  # unit: [0, 1], not normalised, repeated
    assert torch.equal(ev["ir"][0], ev["ir"][2])
    mean = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)
    vis = torch.nn.functional.interpolate(torch.from_numpy(raw["vis"]).permute(2, 0, 1)[None].float() / 255,
                                          size=(48, 64), mode="bilinear", align_corners=False, antialias=True)[0]
    assert torch.allclose(ev["vis"], (vis - mean) / torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1), atol=1e-5)


def test_gt_noise_option():
    raw = SyntheticSaliencyDataset(1, seed=2, height=64, width=80).load_raw(0)
    clean = build_sod_transforms(True, size=(64, 80), crop_border=0, rotation_p=0, hflip=0)(raw, rng=1)
    noisy = build_sod_transforms(True, size=(64, 80), crop_border=0, rotation_p=0, hflip=0, gt_noise=0.01)(raw, rng=1)
    changed = int((clean["mask"] != noisy["mask"]).sum())
    assert 0 < changed <= round(64 * 80 * 0.01) and set(noisy["mask"].unique().tolist()) <= {0.0, 1.0}
    with pytest.raises(ConfigError, match="gt_noise"):
        build_sod_transforms(True, gt_noise=2.0)
