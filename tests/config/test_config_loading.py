"""load_config / config_from_dict / save_config: unknown keys, types, YAML errors, --set overrides, round trips."""

from __future__ import annotations

import dataclasses
import textwrap
import warnings
from pathlib import Path

import pytest

from ivtune.config import (
    PRECISIONS,
    Config,
    DataConfig,
    ModelConfig,
    OptimConfig,
    config_from_dict,
    config_to_dict,
    load_config,
    save_config,
)
from ivtune.errors import ConfigError

MINIMAL = """\
task: seg
model:
  backbone: vit_small_patch16_224
  timm_kwargs: {depth: 2, embed_dim: 64, num_heads: 2}
data:
  dataset: synthetic
  train_split: train
  batch_size: 2
optim:
  lr: 1.0e-4
  warmup_iters: 0
train:
  max_steps: 10
  val_every: 5
  checkpoint_every: 10
"""


def _minimal() -> dict:
    return {
        "task": "seg",
        "model": {"backbone": "vit_small_patch16_224"},
        "data": {"dataset": "synthetic", "train_split": "train", "batch_size": 2},
        "optim": {"warmup_iters": 0},
        "train": {"max_steps": 10, "val_every": 5, "checkpoint_every": 10},
    }


@pytest.fixture
def write(tmp_path: Path):
    def _write(text: str, name: str = "x.yaml") -> Path:
        path = tmp_path / name
        path.write_text(textwrap.dedent(text))
        return path

    return _write


def _error(fn, *args, **kwargs) -> str:
    with pytest.raises(ConfigError) as info:
        fn(*args, **kwargs)
    return str(info.value)


# ------------------------------------------------------------------------------------------------ defaults
def test_minimal_fills_defaults(write):
    path = write(MINIMAL)
    cfg = load_config(path)
    assert cfg.source == str(path)
    assert cfg.model.method == "iv-tuning" and cfg.model.head == "segformer" and cfg.model.weights is None
    assert cfg.model.timm_kwargs == {"depth": 2, "embed_dim": 64, "num_heads": 2}
    assert cfg.data.scale_range == [0.5, 2.0] and cfg.data.ir_norm == "imagenet" and cfg.data.ir_channels == 3
    assert cfg.data.val_split is None and cfg.data.root is None
    assert cfg.optim == OptimConfig(lr=1e-4, warmup_iters=0)
    assert cfg.optim.betas == (0.9, 0.999) and cfg.optim.weight_decay == 0.01 and cfg.optim.head_lr_mult == 10.0
    assert cfg.train.precision == "32" and cfg.train.devices == 1 and cfg.train.log_every == 50


def test_lenient_but_lossless_types(write):
    """int for float, list for tuple, PyYAML's dotless '6e-5' string for float, 32 for the precision string."""
    text = MINIMAL.replace("lr: 1.0e-4", "lr: 6e-5\n  weight_decay: 0\n  betas: [0.9, 0.99]")
    text = text.replace("checkpoint_every: 10", "checkpoint_every: 10\n  precision: 32\n  devices: '0,1'")
    cfg = load_config(write(text))
    assert cfg.optim.lr == 6e-5 and isinstance(cfg.optim.lr, float)
    assert cfg.optim.weight_decay == 0.0 and isinstance(cfg.optim.weight_decay, float)
    assert cfg.optim.betas == (0.9, 0.99)
    assert cfg.train.precision == "32" and cfg.train.devices == "0,1"


def test_empty_section_means_defaults(write):
    cfg = load_config(write(MINIMAL.replace("optim:\n  lr: 1.0e-4\n  warmup_iters: 0\n", "optim:\n")
                            .replace("max_steps: 10", "max_steps: 2000")))
    assert cfg.optim == OptimConfig()


# -------------------------------------------------------------------------------------------- unknown keys
def test_unknown_nested_key_names_key_file_line_and_suggestion(write):
    path = write(MINIMAL.replace("lr: 1.0e-4", "lrr: 1.0e-4"))
    msg = _error(load_config, path)
    assert f"unknown key 'optim.lrr' in {path} line 10; did you mean 'optim.lr'?" == msg


def test_unknown_top_level_key(write):
    path = write(MINIMAL + "trian: {}\n")
    msg = _error(load_config, path)
    assert "unknown key 'trian'" in msg and str(path) in msg and "did you mean 'train'?" in msg


def test_key_in_the_wrong_section_points_to_the_right_one(write):
    msg = _error(load_config, write(MINIMAL.replace("  max_steps: 10", "  max_steps: 10\n  lr: 0.1")))
    assert "unknown key 'train.lr'" in msg and "did you mean 'optim.lr'?" in msg


def test_unknown_key_without_suggestion_lists_valid_keys(write):
    msg = _error(load_config, write(MINIMAL.replace("  max_steps: 10", "  max_steps: 10\n  zzzz: 1")))
    assert "unknown key 'train.zzzz'" in msg and "Valid keys of 'train': max_steps, val_every" in msg


def test_all_key_problems_reported_at_once(write):
    text = MINIMAL.replace("lr: 1.0e-4", "lrr: 1.0e-4").replace("  val_every: 5\n", "").replace("task: seg", "tsk: seg")
    msg = _error(load_config, write(text))
    assert msg.startswith("4 problems in ")
    for part in ("'optim.lrr'", "'tsk'", "missing required key 'train.val_every'", "missing required key 'task'"):
        assert part in msg


def test_missing_required_key(write):
    msg = _error(load_config, write(MINIMAL.replace("  batch_size: 2\n", "")))
    assert "missing required key 'data.batch_size'" in msg and "--set data.batch_size=VALUE" in msg


def test_free_form_mappings_accept_any_key(write):
    text = MINIMAL.replace("  timm_kwargs: {depth: 2, embed_dim: 64, num_heads: 2}",
                           "  timm_kwargs: {depth: 2, embed_dim: 64, num_heads: 2}\n  head_kwargs: {anything: [1, 2]}")
    assert load_config(write(text)).model.head_kwargs == {"anything": [1, 2]}


def test_dataset_options_are_typed_keys_of_the_data_section(write):
    cfg = load_config(write(MINIMAL.replace("  batch_size: 2", "  batch_size: 2\n  num_samples: 8")))
    assert cfg.data.num_samples == 8 and cfg.data.dataset_options()["num_samples"] == 8
    msg = _error(load_config, write(MINIMAL.replace("  batch_size: 2", "  batch_size: 2\n  num_samples: many")))
    assert "wrong type for 'data.num_samples'" in msg and "line 9" in msg


# ---------------------------------------------------------------------------------------------------- types
@pytest.mark.parametrize("old,new,key,expected,seen", [
    ("max_steps: 10", "max_steps: ten", "train.max_steps", "expected int", "'ten' (str)"),
    ("max_steps: 10", "max_steps: 10.5", "train.max_steps", "expected int", "10.5 (float)"),
    ("max_steps: 10", "max_steps: true", "train.max_steps", "expected int", "True (bool)"),
    ("lr: 1.0e-4", "lr: fast", "optim.lr", "expected float", "'fast' (str)"),
    ("batch_size: 2", "batch_size: 2\n  crop_size: 512", "data.crop_size", "expected list of int or null",
     "512 (int)"),
    ("batch_size: 2", "batch_size: 2\n  crop_size: [512, x]", "data.crop_size", "expected list of int or null",
     "[512, 'x'] (list)"),
    ("lr: 1.0e-4", "lr: 1.0e-4\n  betas: 0.9", "optim.betas", "expected list of 2 float", "0.9 (float)"),
    ("backbone: vit_small_patch16_224", "backbone: [vit]", "model.backbone", "expected str", "['vit'] (list)"),
    ("timm_kwargs: {depth: 2, embed_dim: 64, num_heads: 2}", "timm_kwargs: [depth]", "model.timm_kwargs",
     "expected mapping", "['depth'] (list)"),
    ("timm_kwargs: {depth: 2, embed_dim: 64, num_heads: 2}", "pretrained: 'yes'", "model.pretrained",
     "expected bool", "'yes' (str)"),
])
def test_wrong_type_names_key_file_expected_and_seen(write, old, new, key, expected, seen):
    path = write(MINIMAL.replace(old, new))
    msg = _error(load_config, path)
    assert msg.startswith(f"wrong type for '{key}' in {path} line ")
    assert expected in msg and seen in msg


def test_section_of_wrong_type(write):
    msg = _error(load_config, write(MINIMAL.replace("optim:\n  lr: 1.0e-4\n  warmup_iters: 0\n", "optim: 3\n")))
    assert "wrong type for 'optim'" in msg and "expected mapping" in msg


# ------------------------------------------------------------------------------------------- file problems
def test_yaml_syntax_error_names_file_and_line(write):
    path = write(MINIMAL.replace("  dataset: synthetic", "  dataset: [synthetic"))
    msg = _error(load_config, path)
    assert msg.startswith(f"YAML syntax error in {path} line ")


def test_yaml_indentation_error(write):
    path = write(MINIMAL.replace("  batch_size: 2", "    batch_size: 2"))
    assert f"YAML syntax error in {path} line 8" in _error(load_config, path)


def test_duplicate_key_is_an_error(write):
    path = write(MINIMAL.replace("  max_steps: 10", "  max_steps: 10\n  max_steps: 20"))
    msg = _error(load_config, path)
    assert "duplicate key 'train.max_steps'" in msg and "lines 13 and 14" in msg


@pytest.mark.parametrize("text,expected", [("", "is empty"), ("- a\n- b\n", "must hold a mapping")])
def test_empty_or_non_mapping_file(write, text, expected):
    assert expected in _error(load_config, write(text))


def test_missing_file(tmp_path):
    path = tmp_path / "nope.yaml"
    msg = _error(load_config, path)
    assert str(path) in msg and "does not exist" in msg


# --------------------------------------------------------------------------------------------- value checks
@pytest.mark.parametrize("old,new,key,words", [
    ("batch_size: 2", "batch_size: 2\n  ir_channels: 2", "data.ir_channels", "expected 1 or 3"),
    ("checkpoint_every: 10", "checkpoint_every: 10\n  precision: fp16", "train.precision",
     "expected one of " + ", ".join(PRECISIONS)),
    ("batch_size: 2", "batch_size: 2\n  crop_size: [512, 512, 3]", "data.crop_size", "two positive ints"),
    ("batch_size: 2", "batch_size: 2\n  crop_size: [0, 512]", "data.crop_size", "two positive ints"),
    ("val_every: 5", "val_every: 0", "train.val_every", "must be >= 1"),
    ("dataset: synthetic", "dataset: mfnet", "data.root", "--set data.root=PATH"),
    ("dataset: synthetic", "dataset: mfnett", "data.dataset", "did you mean 'mfnet'?"),
    ("batch_size: 2", "batch_size: 2\n  ir_norm: meanstd\n  ir_std: 0.2", "data.ir_mean", "ir_norm: meanstd"),
    ("lr: 1.0e-4", "lr: 1.0e-4\n  grad_clip_norm: 1.0\n  grad_clip_value: 0.5", "optim.grad_clip_value", "keep one"),
    ("lr: 1.0e-4", "lr: 1.0e-4\n  schedule: step", "optim.step_milestones", "increasing positive steps"),
    ("lr: 1.0e-4", "lr: -1.0", "optim.lr", "must be > 0"),
    ("timm_kwargs: {depth: 2, embed_dim: 64, num_heads: 2}", "timm_kwargs: {features_only: true}",
     "model.timm_kwargs", "must not contain 'features_only'"),
    ("backbone: vit_small_patch16_224", "backbone: vit_small_patch16_224\n  method: bitfit", "model.method",
     "expected one of"),
    ("task: seg", "task: classification", "task", "expected one of seg"),
    ("checkpoint_every: 10", "checkpoint_every: 10\n  run_name: a/b", "train.run_name", "train.output_dir"),
])
def test_bad_values_name_the_key_and_the_file(write, old, new, key, words):
    path = write(MINIMAL.replace(old, new))
    msg = _error(load_config, path)
    assert msg.startswith(f"bad value for '{key}' in {path}"), msg
    assert words in msg


def test_bad_value_reports_the_line(write):
    path = write(MINIMAL.replace("batch_size: 2", "batch_size: 2\n  ir_channels: 2"))
    assert f"in {path} line 9:" in _error(load_config, path)


def test_weights_and_pretrained_warns_and_weights_win(write):
    text = MINIMAL.replace("  timm_kwargs", "  pretrained: true\n  weights: w.safetensors\n  timm_kwargs")
    with pytest.warns(UserWarning, match="local file wins"):
        cfg = load_config(write(text))
    assert cfg.model.weights == "w.safetensors"


def test_warmup_longer_than_run_warns(write):
    with pytest.warns(UserWarning, match="never leaves warm-up"):
        load_config(write(MINIMAL.replace("warmup_iters: 0", "warmup_iters: 1500")))


# ------------------------------------------------------------------------------------------------ overrides
def test_overrides_scalars_lists_null_and_free_form(write):
    text = MINIMAL.replace("  timm_kwargs", "  weights: w.safetensors\n  timm_kwargs")
    cfg = load_config(write(text), [
        "train.max_steps=100",
        "data.crop_size=[256,320]",
        "model.weights=null",
        "model.timm_kwargs.depth=3",           # existing key inside a free-form mapping
        "model.timm_kwargs.img_size=[64, 96]",  # new key inside it
        "data.night_fraction=0.25",            # a dataset option: a typed key of the data section
        "optim.lr=3e-4",                       # PyYAML: a string; float field accepts it
        "optim.betas=[0.9, 0.95]",
        "train.precision=bf16-mixed",
        "train.run_name=2024",                 # a number typed into a text field stays text
        "train.devices=auto",
    ])
    assert cfg.train.max_steps == 100
    assert cfg.data.crop_size == [256, 320]
    assert cfg.model.weights is None
    assert cfg.model.timm_kwargs == {"depth": 3, "embed_dim": 64, "num_heads": 2, "img_size": [64, 96]}
    assert cfg.data.night_fraction == 0.25 and cfg.data.dataset_options()["night_fraction"] == 0.25
    assert cfg.optim.lr == 3e-4 and cfg.optim.betas == (0.9, 0.95)
    assert cfg.train.precision == "bf16-mixed" and cfg.train.run_name == "2024" and cfg.train.devices == "auto"


def test_later_override_wins_and_free_form_mapping_can_be_replaced(write):
    cfg = load_config(write(MINIMAL), ["train.max_steps=7", "train.max_steps=8", "model.timm_kwargs={}"])
    assert cfg.train.max_steps == 8 and cfg.model.timm_kwargs == {}


def test_override_number_text_for_text_field_keeps_the_text(write):
    assert load_config(write(MINIMAL), ["train.run_name=1.10"]).train.run_name == "1.10"


@pytest.mark.parametrize("override,words", [
    ("optim.lrr=1e-4", "unknown key 'optim.lrr' in --set optim.lrr=1e-4; did you mean 'optim.lr'?"),
    ("trian.max_steps=3", "unknown key 'trian' in --set trian.max_steps=3; did you mean 'train'?"),
    ("model.heads=x", "unknown key 'model.heads' in --set model.heads=x; did you mean 'model.head'?"),
    ("train.max_steps=ten", "wrong type for 'train.max_steps' in --set train.max_steps=ten: expected int, got 'ten'"),
    ("data.ir_channels=2", "bad value for 'data.ir_channels' in --set data.ir_channels=2"),
    ("model.timm_kwargs=null", "wrong type for 'model.timm_kwargs' in --set model.timm_kwargs=null"),
    ("train.max_steps", "--set expects KEY=VALUE"),
    ("=3", "--set expects KEY=VALUE"),
    ("train..max_steps=3", "--set expects KEY=VALUE"),
    ("data.crop_size=[256,", "cannot parse the value of --set data.crop_size=[256,"),
    ("optim=3", "'optim' is a section"),
    ("model.backbone.x=1", "'model.backbone' is 'vit_small_patch16_224' (str)"),
])
def test_override_errors_say_they_came_from_set(write, override, words):
    msg = _error(load_config, write(MINIMAL), [override])
    assert words in msg, msg


def test_override_can_fix_a_missing_key(write):
    cfg = load_config(write(MINIMAL.replace("  batch_size: 2\n", "")), ["data.batch_size=4"])
    assert cfg.data.batch_size == 4


def test_overrides_must_be_a_list(write):
    assert "wrap it in a list" in _error(load_config, write(MINIMAL), "train.max_steps=3")


# ----------------------------------------------------------------------------------------- dicts, round trip
def test_config_from_dict_does_not_modify_its_input():
    d = _minimal()
    before = repr(d)
    cfg = config_from_dict(d, overrides=["model.timm_kwargs.depth=2", "data.seed=1"])
    assert repr(d) == before
    assert cfg.source == "<dict>" and cfg.model.timm_kwargs == {"depth": 2}


def test_config_from_dict_errors_name_the_source():
    d = _minimal()
    d["optim"]["lrr"] = 1.0
    assert "unknown key 'optim.lrr' in run.ckpt" in _error(config_from_dict, d, source="run.ckpt")


def test_save_load_round_trip_is_equal(tmp_path):
    cfg = config_from_dict(_minimal(), overrides=[
        "model.timm_kwargs={img_size: [64, 96], depth: 2}", "data.crop_size=[64, 96]", "optim.betas=[0.8, 0.9]",
        "data.ir_norm=meanstd", "data.ir_mean=0.4", "data.ir_std=0.2", "train.devices='0,1'", "train.precision=32",
        "optim.schedule=step", "optim.step_milestones=[5, 8]", "optim.grad_clip_value=0.5"])
    path = save_config(cfg, tmp_path / "a" / "cfg.yaml")
    text = path.read_text()
    assert "crop_size: [64, 96]" in text and "precision: '32'" in text and "source" not in text.split("\n", 1)[1]
    again = load_config(path)
    assert again == cfg and again.source == str(path) != cfg.source
    assert config_to_dict(again) == config_to_dict(cfg)


def test_config_to_dict_is_plain_yaml_data():
    d = config_to_dict(config_from_dict(_minimal()))
    assert list(d) == ["task", "model", "data", "optim", "train"]
    assert d["optim"]["betas"] == [0.9, 0.999]
    assert d == config_to_dict(config_from_dict(d))


# ------------------------------------------------------------------------------------- direct construction
def test_dataclasses_check_on_construction():
    m = ModelConfig(backbone="vit_small_patch16_224", timm_kwargs={"img_size": (64, 96)}, out_indices=(0, 1, 2, 3))
    assert m.timm_kwargs == {"img_size": [64, 96]} and m.out_indices == [0, 1, 2, 3]
    with pytest.raises(ConfigError, match="wrong type for 'data.batch_size': expected int, got '2' \\(str\\)"):
        DataConfig(dataset="synthetic", train_split="train", batch_size="2")
    with pytest.raises(ConfigError, match="bad value for 'optim.name'"):
        OptimConfig(name="sgd")
    cfg = config_from_dict(_minimal())
    with pytest.raises(ConfigError, match="ir_channels"):
        dataclasses.replace(cfg.data, ir_channels=4)
    with pytest.raises(ConfigError, match="wrong type for 'model'"):
        Config(task="seg", model={"backbone": "x"}, data=cfg.data, train=cfg.train)


def test_source_is_not_compared():
    a, b = config_from_dict(_minimal(), source="a.yaml"), config_from_dict(_minimal(), source="b.yaml")
    assert a == b and a.source != b.source


def test_no_warnings_for_a_clean_config(write):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_config(write(MINIMAL))
