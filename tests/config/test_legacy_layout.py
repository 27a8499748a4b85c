"""Configs and run directories written in the layout before the task data sections still load and evaluate."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from ivtune import load_config
from ivtune.config import config_to_dict
from ivtune.errors import ConfigError
from ivtune.runner.run import evaluate, train
from tests.task_tester import run_overrides

REPO = Path(__file__).resolve().parents[2]

# what `ivtune train` wrote into run directories before the task data sections (ivtune 0.x, commit 7b8832d)
LEGACY_SOD = """\
task: sod
model: {backbone: vit_small_patch16_224, method: iv-tuning, adapter_init: default, adapter_dropout: 0.1,
        timm_kwargs: {depth: 2, embed_dim: 64, num_heads: 2}, head: cpnet}
data:
  dataset: synthetic
  root: null
  train_split: train
  test_split: test
  options: {num_samples: 4, height: 64, width: 80, crop_border: 12, rotation: 10.0, gt_noise: 0.001}
  crop_size: [64, 80]
  scale_range: [1.0, 1.0]
  batch_size: 2
train: {max_steps: 2, val_every: 2, checkpoint_every: 2}
"""
LEGACY_DET = """\
task: det
model: {backbone: vit_small_patch16_224, timm_kwargs: {depth: 2, embed_dim: 64, num_heads: 2}, head: fcos}
data:
  dataset: kaist
  root: /data/KAIST
  train_split: train
  options: {kaist_setting: all, train_sizes: [480, 512], test_size: 512, max_size: 640}
  crop_size: null
  scale_range: [1.0, 1.0]
  batch_size: 2
train: {max_steps: 2, val_every: 2, checkpoint_every: 2}
"""


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "legacy.yaml"
    path.write_text(text)
    return path


def test_legacy_sod_config_reads_as_the_new_layout(tmp_path):
    cfg = load_config(_write(tmp_path, LEGACY_SOD))
    d = cfg.data
    assert (d.size, d.crop_border, d.rotation, d.gt_noise) == ([64, 80], 12, 10.0, 0.001)  # crop_size -> size
    assert d.dataset_options()["num_samples"] == 4 and not hasattr(d, "scale_range")  # SOD never read it
    new = config_to_dict(cfg)
    assert "options" not in new["data"] and "crop_size" not in new["data"]
    assert cfg.model.resolved_method_config().dropout == 0.1


def test_legacy_det_config_drops_the_keys_detection_never_read(tmp_path):
    d = load_config(_write(tmp_path, LEGACY_DET)).data
    assert (d.kaist_setting, d.train_sizes, d.test_size, d.max_size) == ("all", [480, 512], 512, 640)
    assert not hasattr(d, "crop_size") and not hasattr(d, "scale_range")


def test_a_misspelt_legacy_option_is_still_named_with_its_file_and_line(tmp_path):
    text = LEGACY_DET.replace("kaist_setting: all", "kaist_settng: all")
    with pytest.raises(ConfigError, match=r"unknown key 'data.kaist_settng' in .*legacy.yaml line 7.*kaist_setting"):
        load_config(_write(tmp_path, text))


def test_a_legacy_option_repeating_a_key_is_an_error(tmp_path):
    text = LEGACY_SOD.replace("crop_border: 12", "crop_border: 12, batch_size: 4")
    with pytest.raises(ConfigError, match="data.options.batch_size.*repeats the key 'data.batch_size'"):
        load_config(_write(tmp_path, text))


def test_a_run_directory_with_a_legacy_config_evaluates(tmp_path):
    run_dir = train(REPO / "configs" / "seg" / "synthetic_tiny.yaml",
                    run_overrides(tmp_path, "train.max_steps=2", "train.checkpoint_every=2", "train.val_every=2",
                                  "data.num_samples=4", "data.crop_size=[64,80]", "data.height=64", "data.width=80"))
    new = evaluate(run_dir)
    raw = yaml.safe_load((run_dir / "config.yaml").read_text())
    dataset_keys = ("num_samples", "seed", "height", "width", "night_fraction", "fog_fraction")
    raw["data"]["options"] = {k: raw["data"].pop(k) for k in dataset_keys}  # back to the old layout
    for key in ("method_config",):
        raw["model"].pop(key)
    raw["model"] |= {"adapter_init": "default", "adapter_dropout": 0.1}
    (run_dir / "config.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    old = evaluate(run_dir)
    assert old.keys() == new.keys()
    for cond in new:
        assert old[cond]["miou"] == new[cond]["miou"], cond
