"""CLI level: `ivtune data check` lists every problem of a broken tree, and `ivtune train` refuses it up front."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from ivtune.cli import main
from ivtune.errors import DataError
from ivtune.runner.run import train
from tests.helpers import retarget

TINY_CONFIG = Path(__file__).resolve().parents[2] / "configs" / "seg" / "synthetic_tiny.yaml"


def broken_tree(root: Path) -> dict[str, Path]:
    """A `folders` tree with one good pair and one of each problem."""
    rng = np.random.default_rng(0)
    for sub in ("vis", "ir", "labels"):
        (root / "train" / sub).mkdir(parents=True)
    (root / "classes.txt").write_text("0 background\n1 road\n2 person\n")

    def pair(name, hw=(32, 48), ir_hw=None, label_max=3):
        Image.fromarray(rng.integers(0, 255, (*hw, 3), dtype=np.uint8)).save(root / "train" / "vis" / f"{name}.png")
        if ir_hw is not False:
            Image.fromarray(rng.integers(0, 255, ir_hw or hw, dtype=np.uint8)).save(
                root / "train" / "ir" / f"{name}.png")
        Image.fromarray(rng.integers(0, label_max, hw, dtype=np.uint8)).save(
            root / "train" / "labels" / f"{name}.png")

    pair("good")
    pair("lonely", ir_hw=False)  # no IR partner
    pair("mismatch", ir_hw=(32, 40))  # IR of another size
    pair("badlabel", label_max=9)  # label values 3..8 outside the 3 classes
    pair("corrupt")
    (root / "train" / "vis" / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really a png")
    return {k: root / "train" / s / f"{k}.png" for k, s in
            (("lonely", "ir"), ("mismatch", "ir"), ("badlabel", "labels"), ("corrupt", "vis"))}


def _set(tmp_path: Path, root: Path) -> list[str]:
    return [f"data.root={root}", "data.val_split=null", "data.test_split=null",
            f"train.output_dir={tmp_path / 'runs'}", "data.crop_size=[32, 48]"]


def test_data_check_lists_every_problem(tmp_path):
    files = broken_tree(tmp_path / "tree")
    args = ["data", "check", str(retarget(TINY_CONFIG, "folders", tmp_path))]
    for o in _set(tmp_path, tmp_path / "tree"):
        args += ["--set", o]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1, result.output
    for name, path in files.items():
        assert str(path.name) in result.output, f"{name} not reported:\n{result.output}"
    assert "missing" in result.output and "problems found" in result.output


def test_train_stops_before_the_first_step(tmp_path):
    files = broken_tree(tmp_path / "tree")
    with pytest.raises(DataError) as e:
        train(retarget(TINY_CONFIG, "folders", tmp_path), _set(tmp_path, tmp_path / "tree"))
    for path in files.values():
        assert path.name in str(e.value)
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").rglob("*.ckpt"))


def test_unknown_config_key_names_it(tmp_path):
    result = CliRunner().invoke(main, ["train", str(TINY_CONFIG), "--set", "optim.lrr=0.1"])
    assert result.exit_code == 2
    assert "optim.lrr" in result.output and "optim.lr" in result.output
