"""The seeded M3FD split writer (`ivtune data split`): fixed rule, disjoint, no silent replacement."""

from __future__ import annotations

import random

import pytest
from click.testing import CliRunner
from PIL import Image

from ivtune.cli import main
from ivtune.errors import DataError
from ivtune.tasks.det.datasets import build_det_dataset
from ivtune.tasks.det.splits import seeded_split, write_split_files


def m3fd_root(tmp_path, n=10, orphan=True):
    for d in ("vi", "ir", "labels"):
        (tmp_path / d).mkdir(parents=True, exist_ok=True)
    for k in range(n):
        Image.new("RGB", (8, 6)).save(tmp_path / "vi" / f"{k:05d}.png")
        Image.new("L", (8, 6)).save(tmp_path / "ir" / f"{k:05d}.png")
    if orphan:  # a visible image without its infrared partner never enters a split
        Image.new("RGB", (8, 6)).save(tmp_path / "vi" / "99999.png")
    return tmp_path


def test_seeded_split_rule():
    stems = [f"{k:05d}" for k in range(4200)]
    train, val = seeded_split(list(reversed(stems)), seed=0)  # input order does not matter
    assert (len(train), len(val)) == (3360, 840)  # M3FD's 4,200 pairs
    assert set(train).isdisjoint(val) and sorted(train + val) == stems
    expected = sorted(stems)
    random.Random(0).shuffle(expected)  # the documented rule, restated
    assert train == expected[:3360]
    assert seeded_split(stems, seed=1)[0] != train
    with pytest.raises(ValueError, match="between 0 and 1"):
        seeded_split(stems, train_fraction=1.0)


def test_write_split_files_and_dataset(tmp_path):
    root = m3fd_root(tmp_path)
    with pytest.raises(DataError, match="ivtune data split"):  # the missing-split error says how to make one
        build_det_dataset("m3fd", root, "train")
    paths = write_split_files(root)
    train = paths["train"].read_text().split()
    val = paths["val"].read_text().split()
    assert (len(train), len(val)) == (8, 2) and "99999" not in train + val
    assert len(build_det_dataset("m3fd", root, "train")) == 8
    assert len(build_det_dataset("m3fd", root, "val")) == 2
    write_split_files(root)  # same rule again: same files, no error
    with pytest.raises(DataError, match="--force"):
        write_split_files(root, seed=3)
    assert paths["train"].read_text().split() == train  # kept
    write_split_files(root, seed=3, force=True)
    assert paths["train"].read_text().split() != train


def test_cli_data_split(tmp_path):
    root = m3fd_root(tmp_path, n=5, orphan=False)
    res = CliRunner().invoke(main, ["data", "split", str(root), "--train-fraction", "0.6"])
    assert res.exit_code == 0, res.output
    assert "train: 3 stems" in res.output and "val: 2 stems" in res.output
    empty = tmp_path / "empty"
    (empty / "vi").mkdir(parents=True)
    (empty / "ir").mkdir()
    res = CliRunner().invoke(main, ["data", "split", str(empty)])
    assert res.exit_code != 0 and "0 visible+infrared pair(s)" in res.output
