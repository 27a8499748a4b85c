"""Bad files raise a DataError naming the file; ``scan_seg_dataset`` lists every problem in one pass."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ivtune.data import scan_pairs as scan_seg_dataset
from ivtune.errors import DataError
from ivtune.tasks.seg import build_seg_dataset

FOLDERS = ("vi", "ir", "Segmentation_labels")  # MSRS layout, 9 classes


def _msrs(tree, names):
    return tree.split_folders("train", names, FOLDERS, 9)


def test_missing_partners_all_listed(tmp_path, tree):
    _msrs(tree, ["00001D", "00002N", "00003D"])
    (tmp_path / "train" / "ir" / "00002N.png").unlink()
    (tmp_path / "train" / "Segmentation_labels" / "00003D.png").unlink()
    with pytest.raises(DataError) as err:
        build_seg_dataset("msrs", tmp_path, "train")
    msg = str(err.value)
    assert str(tmp_path / "train" / "ir" / "00002N.png") in msg
    assert str(tmp_path / "train" / "Segmentation_labels" / "00003D.png") in msg
    assert "2 file(s) missing" in msg and "strict=False" in msg
    ds = build_seg_dataset("msrs", tmp_path, "train", strict=False)
    assert len(ds) == 3
    with pytest.raises(DataError, match="00002N"):
        ds[1]


def test_ir_without_vis_is_a_missing_partner(tmp_path, tree):
    _msrs(tree, ["00001D"])
    tree.save_gray(tmp_path / "train" / "ir" / "00009N.png", np.zeros((24, 32)))
    with pytest.raises(DataError, match="missing vis .*00009N.png"):
        build_seg_dataset("msrs", tmp_path, "train")


def test_size_mismatch_names_both_files(tmp_path, tree):
    _msrs(tree, ["00001D"])
    ir_path = tmp_path / "train" / "ir" / "00001D.png"
    tree.save_gray(ir_path, np.zeros((20, 32)))
    ds = build_seg_dataset("msrs", tmp_path, "train")
    with pytest.raises(DataError, match="VIS/IR size mismatch") as err:
        ds[0]
    assert str(ir_path) in str(err.value) and str(tmp_path / "train" / "vi" / "00001D.png") in str(err.value)
    assert "(24, 32)" in str(err.value) and "(20, 32)" in str(err.value)


def _first_pair_fails_naming(root: Path, path: Path, match: str) -> None:
    """Reading the first pair of the msrs tree at ``root`` raises a DataError matching ``match`` that names ``path``."""
    with pytest.raises(DataError, match=match) as err:
        build_seg_dataset("msrs", root, "train")[0]
    assert str(path) in str(err.value)


def test_label_size_mismatch(tmp_path, tree):
    _msrs(tree, ["00001D"])
    label = tmp_path / "train" / "Segmentation_labels" / "00001D.png"
    tree.save_gray(label, np.zeros((24, 30)))
    _first_pair_fails_naming(tmp_path, label, "Label size mismatch")


def test_corrupt_image(tmp_path, tree):
    _msrs(tree, ["00001D"])
    vis = tmp_path / "train" / "vi" / "00001D.png"
    vis.write_bytes(vis.read_bytes()[:60])  # truncated PNG
    _first_pair_fails_naming(tmp_path, vis, "Cannot read image")


def test_label_values_outside_classes(tmp_path, tree):
    _msrs(tree, ["00001D"])
    label = tmp_path / "train" / "Segmentation_labels" / "00001D.png"
    values = np.zeros((24, 32), np.uint8)
    values[0, :3] = (9, 17, 255)  # 255 is ignore_index: allowed
    tree.save_gray(label, values)
    _first_pair_fails_naming(tmp_path, label, r"values \[9, 17\]")


def test_scan_lists_all_four_problems(tmp_path, tree):
    _msrs(tree, ["00001D", "00002N", "00003D", "00004N", "00005D"])
    split = tmp_path / "train"
    (split / "ir" / "00001D.png").unlink()  # missing partner
    tree.save_gray(split / "ir" / "00002N.png", np.zeros((20, 32)))  # size mismatch
    (split / "vi" / "00003D.png").write_bytes(b"not a png at all")  # unreadable
    bad = np.zeros((24, 32), np.uint8)
    bad[3, 3] = 40
    tree.save_gray(split / "Segmentation_labels" / "00004N.png", bad)  # label value outside 0..8
    ds = build_seg_dataset("msrs", tmp_path, "train", strict=False)
    report = scan_seg_dataset(ds)
    assert not report.ok and report.num_pairs == 5 and report.num_ok == 1
    assert report.conditions == {"day": 3, "night": 2}
    found = {(kind, path) for kind, path, _ in report.problems}
    assert found == {
        ("missing", str(split / "ir" / "00001D.png")),
        ("size_mismatch", str(split / "ir" / "00002N.png")),
        ("unreadable", str(split / "vi" / "00003D.png")),
        ("label_values", str(split / "Segmentation_labels" / "00004N.png")),
    }
    text = ds.scan().format()
    assert "4 problem(s)" in text and "00003D.png" in text and "[40]" in text


def test_scan_clean_and_packed(tmp_path, tree):
    rgb, ir, mask = tree.random_pair(0, (16, 16), 9)
    tree.save_rgba(tmp_path / "images" / "00001D.png", rgb, ir)
    (tmp_path / "images" / "00002N.png").write_bytes(b"corrupt")
    tree.save_gray(tmp_path / "labels" / "00001D.png", mask)
    tree.save_gray(tmp_path / "labels" / "00002N.png", mask)
    (tmp_path / "train.txt").write_text("00001D\n00002N\n00003D\n")
    report = build_seg_dataset("mfnet", tmp_path, "train", strict=False).scan()
    kinds = sorted(k for k, _, _ in report.problems)
    assert kinds == ["missing", "missing", "unreadable"]  # 00003D lacks image and label; the corrupt file once
    ok = build_seg_dataset("synthetic", None, "val", num_samples=3, height=32, width=32).scan()
    assert ok.ok and "OK" in ok.format()
