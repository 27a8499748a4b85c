"""Every dataset layout loads through the registry with the right classes, splits and conditions."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from ivtune.data import collate_pairs
from ivtune.errors import ConfigError, DataError
from ivtune.tasks.seg import DATASETS, build_seg_dataset
from ivtune.tasks.seg.datasets.mfnet import MFNetPackedDataset

MFNET_SPLITS = {"train": ["00001D", "00002N", "00003D"], "val": ["00004N"], "test": ["00005D", "00006N"]}


def _write_split_files(root: Path) -> None:
    for split, names in MFNET_SPLITS.items():
        (root / f"{split}.txt").write_text("\n".join(names) + "\n")


def _mfnet_rtfnet(tree, root: Path) -> dict[str, tuple]:
    arrays = {}
    for names in MFNET_SPLITS.values():
        for name in names:
            vis, ir, mask = tree.random_pair(int(name[:5]), (24, 32), 9)
            tree.save_rgba(root / "images" / f"{name}.png", vis, ir)
            tree.save_gray(root / "labels" / f"{name}.png", mask)
            arrays[name] = (vis, ir, mask)
    _write_split_files(root)
    return arrays


def test_mfnet_rtfnet_layout_splits_and_conditions(tmp_path, tree):
    arrays = _mfnet_rtfnet(tree, tmp_path)
    ds = build_seg_dataset("mfnet", tmp_path, "train")
    assert isinstance(ds, MFNetPackedDataset)
    assert ds.num_classes == 9 and ds.classes[0] == "unlabeled" and ds.ignore_index == 255 and len(ds.palette) == 9
    assert [r.name for r in ds.records] == MFNET_SPLITS["train"]
    assert ds.conditions == ["day", "night", "day"]
    sample = ds[1]
    vis, ir, mask = arrays["00002N"]
    assert sample["vis"].shape == (3, 24, 32) and sample["ir"].shape == (1, 24, 32)
    assert sample["mask"].dtype == torch.long
    assert torch.equal(sample["vis"], torch.from_numpy(vis).permute(2, 0, 1).float() / 255)
    assert torch.equal(sample["ir"][0], torch.from_numpy(ir).float() / 255)
    assert torch.equal(sample["mask"], torch.from_numpy(mask).long())
    assert sample["meta"]["condition"] == "night" and sample["meta"]["orig_size"] == (24, 32)
    trainval = build_seg_dataset("mfnet", tmp_path, "trainval", layout="rtfnet")
    assert [r.name for r in trainval.records] == MFNET_SPLITS["train"] + MFNET_SPLITS["val"]
    assert len(build_seg_dataset("mfnet", tmp_path, "test")) == 2


@pytest.mark.shared
def test_mfnet_rtfnet_layout_real_4ch_file(tmp_path, real_root):
    (tmp_path / "images").mkdir()
    for name in ("01234N", "01477D"):
        shutil.copy(real_root / "mfnet_unlabeled" / "rgbt4ch" / f"{name}.png", tmp_path / "images" / f"{name}.png")
    (tmp_path / "test.txt").write_text("01234N\n01477D\n")
    ds = build_seg_dataset("mfnet", tmp_path, "test", with_labels=False)  # the real files come without labels
    sample = collate_pairs([ds[0], ds[1]])
    assert sample["vis"].shape == (2, 3, 480, 640) and sample["ir"].shape == (2, 1, 480, 640)
    assert "mask" not in sample and [m["condition"] for m in sample["meta"]] == ["night", "day"]
    assert sample["meta"][0]["label_path"] is None
    assert abs(sample["ir"][0].max().item() - 243 / 255) < 1e-6  # thermal is channel 4, not alpha-stripped RGB


def test_mfnet_separate_layout(tmp_path, tree):
    for names in MFNET_SPLITS.values():
        for name in names:
            vis, ir, mask = tree.random_pair(int(name[:5]), (24, 32), 9)
            tree.save_rgb(tmp_path / "RGB" / f"{name}.png", vis)
            tree.save_gray(tmp_path / "Thermal" / f"{name}.png", ir)
            tree.save_gray(tmp_path / "Label" / f"{name}.png", mask)
    _write_split_files(tmp_path)
    auto = build_seg_dataset("mfnet", tmp_path, "val")
    assert type(auto).__name__ == "PairedSegDataset" and [r.name for r in auto.records] == ["00004N"]
    assert auto.records[0].ir_path.endswith("Thermal/00004N.png") and auto.conditions == ["night"]
    ds = build_seg_dataset("mfnet", tmp_path, "trainval", layout="separate")
    assert len(ds) == 4 and ds[3]["mask"].shape == (24, 32)
    with pytest.raises(DataError, match="images"):
        build_seg_dataset("mfnet", tmp_path, "train", layout="rtfnet")


@pytest.mark.parametrize(
    ("name", "folders", "splits", "num_classes", "conditions"),
    [
        ("msrs", ("vi", "ir", "Segmentation_labels"), ("train", "test"), 9, ["day", "night"]),
        ("pst900", ("rgb", "thermal", "labels"), ("train", "test"), 5, [None, None]),
        ("fmb", ("Visible", "Infrared", "Label"), ("train", "test"), 15, [None, None]),
    ],
)
def test_split_folder_datasets(tmp_path, tree, name, folders, splits, num_classes, conditions):
    assert DATASETS[name].splits == splits
    for split in splits:
        tree.split_folders(split, [f"{split}_00001D", f"{split}_00002N"], folders, num_classes)
    for split in splits:
        ds = build_seg_dataset(name, tmp_path, split)
        assert ds.num_classes == num_classes and len(ds.palette) == num_classes
        assert [r.name for r in ds.records] == [f"{split}_00001D", f"{split}_00002N"]
        assert ds.conditions == conditions
        batch = collate_pairs([ds[0], ds[1]])
        assert batch["vis"].shape == (2, 3, 24, 32) and batch["mask"].max() < num_classes


def test_fmb_class_names():
    fmb = DATASETS["fmb"].classes
    assert fmb[0] == "background" and fmb[1:4] == ("road", "sidewalk", "building") and fmb[-1] == "pole"


def test_folders_layout_classes_file_and_option(tmp_path, tree):
    arrays = tree.split_folders("train", ["a1D", "b2N", "c3F", "d4"], ("vis", "ir", "labels"), 3)
    tree.split_folders("val", ["e5D"], ("vis", "ir", "labels"), 3)
    with pytest.raises(DataError, match="classes.txt"):
        build_seg_dataset("folders", tmp_path, "train")
    (tmp_path / "classes.txt").write_text("0 background\n1 thing\n2 other\n")
    ds = build_seg_dataset("folders", tmp_path, "train")
    assert ds.classes == ("background", "thing", "other")
    assert ds.conditions == ["day", "night", "fog", None]
    assert np.array_equal(ds[0]["mask"].numpy(), arrays["a1D"][2])
    named = build_seg_dataset("folders", tmp_path, "val", classes=["x", "y", "z", "w"])
    assert named.num_classes == 4
    with pytest.raises(ConfigError, match="train, val"):
        build_seg_dataset("folders", tmp_path, "test")


def test_registry_errors(tmp_path):
    with pytest.raises(ConfigError, match="fmb, folders, mfnet, msrs, pst900, synthetic"):
        build_seg_dataset("cityscapes", tmp_path, "train")
    with pytest.raises(ConfigError, match="train, val, test, trainval"):
        build_seg_dataset("mfnet", tmp_path, "validation")
    with pytest.raises(ConfigError, match="'colour'.*layout"):
        build_seg_dataset("mfnet", tmp_path, "train", colour=True)
    with pytest.raises(ConfigError, match="root"):
        build_seg_dataset("msrs", None, "train")
    with pytest.raises(DataError, match="msrs split 'train' folder not found"):
        build_seg_dataset("msrs", tmp_path, "train")


def test_common_options_accepted_by_every_dataset():
    import inspect

    for name, entry in DATASETS.items():
        # callers pass strict= to any dataset (e.g. `ivtune data check`); the task sets it, never a config
        assert "strict" in inspect.signature(entry.build).parameters, name
        assert "strict" in entry.excluded_options and "strict" not in entry.options(), name


def test_collate_pairs_meta_and_shape_errors(tmp_path):
    ds = build_seg_dataset("synthetic", None, "val", num_samples=3, height=32, width=48, strict=False)
    batch = collate_pairs([ds[0], ds[1], ds[2]])
    assert batch["vis"].shape == (3, 3, 32, 48) and batch["mask"].shape == (3, 32, 48)
    assert [m["name"] for m in batch["meta"]] == [r.name for r in ds.records]
    other = build_seg_dataset("synthetic", None, "val", num_samples=1, height=40, width=48)[0]
    with pytest.raises(DataError, match="different shapes"):
        collate_pairs([ds[0], other])
    unlabelled = dict(ds[0])
    del unlabelled["mask"]
    with pytest.raises(DataError, match="different keys"):
        collate_pairs([ds[0], unlabelled])
