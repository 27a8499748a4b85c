"""Every command of the CLI answers a user mistake with a message and a non-zero exit code, never a traceback."""

from __future__ import annotations

import traceback
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from ivtune.cli import main
from tests.helpers import REPO

SEG = REPO / "configs" / "seg" / "synthetic_tiny.yaml"


@pytest.fixture
def files(tmp_path) -> dict[str, Path]:
    png = tmp_path / "a.png"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(png)
    (tmp_path / "folder").mkdir()
    (tmp_path / "not_a_run").mkdir()
    (tmp_path / "empty_root").mkdir()
    (tmp_path / "garbage.json").write_text("{not json")
    return {"png": png, "folder": tmp_path / "folder", "not_a_run": tmp_path / "not_a_run",
            "empty_root": tmp_path / "empty_root", "garbage": tmp_path / "garbage.json", "tmp": tmp_path}


CASES = {
    "train missing config": (["train", "{tmp}/nope.yaml"], "does not exist"),
    "train unknown key": (["train", str(SEG), "--set", "train.max_stepz=3"], "unknown key"),
    "train set without =": (["train", str(SEG), "--set", "train.max_steps"], "KEY=VALUE"),
    "train bad value": (["train", str(SEG), "--set", "train.max_steps=-3"], "max_steps"),
    "train png as weights": (["train", str(SEG), "--set", "model.weights={png}", "--set",
                              "train.output_dir={tmp}/runs"], "not a weights file: it is a PNG image"),
    "train resume of no run": (["train", "{not_a_run}", "--resume"], "not a run directory"),
    "eval not a run": (["eval", "{not_a_run}"], "not a run directory"),
    "predict not a run": (["predict", "{not_a_run}", "--vis", "{png}", "--ir", "{png}", "--out", "{tmp}/o"],
                          "not a run directory"),
    "predict file and folder": (["predict", "{not_a_run}", "--vis", "{png}", "--ir", "{folder}", "--out", "{tmp}/o"],
                                "both be files or both be folders"),
    "predict missing option": (["predict", "{not_a_run}", "--vis", "{png}"], "Missing option"),
    "data check unknown split": (["data", "check", str(SEG), "--split", "nosuch"], "nosuch"),
    "data check bad set": (["data", "check", str(SEG), "--set", "data.num_samplez=2"], "unknown key"),
    "data split fraction above 1": (["data", "split", "{empty_root}", "--train-fraction", "1.5"],
                                    "0<x<1"),
    "data split fraction 0": (["data", "split", "{empty_root}", "--train-fraction", "0"], "0<x<1"),
    "data split empty root": (["data", "split", "{empty_root}"], "folder not found"),
    "demo zero steps": (["demo", "--steps", "0", "--out", "{tmp}/demo"], "x>=1"),
    "demo missing weights": (["demo", "--weights", "{tmp}/none.safetensors", "--out", "{tmp}/demo", "--no-hub"],
                             "does not exist"),
    "params unknown backbone": (["params", "resnet18"], "Supported families"),
    "params bad timm kwarg": (["params", "vit_small_patch16_224", "--timm-kwarg", "depth"], "KEY=VALUE"),
    "score det garbage": (["score", "det", "{garbage}", "{garbage}"], ""),
}


@pytest.mark.parametrize("name", list(CASES))
def test_bad_arguments_give_a_message_not_a_traceback(name, files):
    args, says = CASES[name]
    args = [a.format(**files) for a in args]
    result = CliRunner().invoke(main, args)
    leaked = "".join(traceback.format_exception(result.exception)) if result.exception and not isinstance(
        result.exception, SystemExit) else ""
    assert not leaked, leaked
    assert result.exit_code != 0, result.output
    assert "Traceback" not in result.output
    assert says in result.output, result.output
