"""Every task's data section is typed: a misspelt key names the file, the line and the likely key, per task."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from ivtune import load_config
from ivtune.errors import ConfigError
from tests.helpers import retarget

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def _misspell(config: Path, good: str, bad: str, tmp_path: Path) -> tuple[Path, int]:
    lines = config.read_text().splitlines()
    index = next(i for i, line in enumerate(lines) if re.match(rf"\s+{good}:", line))
    lines[index] = lines[index].replace(f"{good}:", f"{bad}:", 1)
    path = tmp_path / config.name
    path.write_text("\n".join(lines) + "\n")
    return path, index + 1


@pytest.mark.parametrize("config,good,bad", [
    ("seg/synthetic_tiny.yaml", "crop_size", "crop_sise"),        # a task key
    ("seg/synthetic_tiny.yaml", "num_samples", "num_sample"),      # a dataset option
    ("sod/synthetic_tiny.yaml", "num_samples", "num_smaples"),
    ("sod/vt5000_swin_l_cpnet.yaml", "val_fraction", "val_fractoin"),
    ("det/synthetic_tiny_fcos.yaml", "test_size", "test_sizes"),
    ("det/synthetic_tiny_fcos.yaml", "num_samples", "num_sampels"),
])
def test_misspelt_data_key_names_file_line_and_suggestion(config, good, bad, tmp_path):
    path, line = _misspell(CONFIGS / config, good, bad, tmp_path)
    with pytest.raises(ConfigError) as err:
        load_config(path, ["data.root=/data"] if "synthetic" not in config else [])
    assert f"unknown key 'data.{bad}' in {path} line {line}; did you mean 'data.{good}'?" in str(err.value)


def test_an_option_of_another_dataset_says_whose_it_is(tmp_path):
    path = retarget(CONFIGS / "det" / "synthetic_tiny_fcos.yaml", "m3fd", tmp_path)
    with pytest.raises(ConfigError, match=r"'data.kaist_setting'.*option of the kaist dataset\(s\), not of m3fd"):
        load_config(path, ["data.root=/data", "data.kaist_setting=all"])


@pytest.mark.parametrize("task,dataset", [("seg", "msrs_det"), ("det", "mfnet"), ("sod", "kaist")])
def test_a_dataset_of_another_task_lists_the_task_datasets(task, dataset, tmp_path):
    config = {"seg": "seg/synthetic_tiny.yaml", "det": "det/synthetic_tiny_fcos.yaml",
              "sod": "sod/synthetic_tiny.yaml"}[task]
    path = retarget(CONFIGS / config, "folders", tmp_path)
    with pytest.raises(ConfigError, match=rf"task '{task}' reads the datasets .*folders.*, not '{dataset}'"):
        load_config(path, [f"data.dataset={dataset}", "data.root=/data"])


def test_method_config_keys_are_checked_per_method(tmp_path):
    with pytest.raises(ConfigError, match=r"'model.method_config'.*'rnk' for method 'lora'; did you mean 'rank'"):
        load_config(CONFIGS / "seg" / "synthetic_tiny.yaml", ["model.method=lora", "model.method_config.rnk=4"])
    cfg = load_config(CONFIGS / "seg" / "synthetic_tiny.yaml", ["model.method=lora", "model.method_config.rank=4"])
    assert cfg.model.resolved_method_config().rank == 4
