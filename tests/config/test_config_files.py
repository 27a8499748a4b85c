"""Every shipped segmentation config loads, builds its backbone (shapes only) and round-trips through save_config."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from ivtune import build_backbone
from ivtune.config import save_config
from ivtune.runner import load_config

CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs" / "seg"
CONFIGS = sorted(CONFIG_DIR.glob("*.yaml"))
EXPECTED = {
    f"{ds}_{bb}_segformer.yaml" for ds in ("mfnet", "msrs", "pst900", "fmb") for bb in ("swin_l", "eva02_l")
} | {"synthetic_tiny.yaml", "synthetic_dinov2_s.yaml"}


def _ids(paths: list[Path]) -> list[str]:
    return [p.stem for p in paths]


def test_expected_configs_exist():
    assert EXPECTED <= {p.name for p in CONFIGS}


@pytest.mark.filterwarnings("error")  # a shipped config must load without warnings
@pytest.mark.parametrize("path", CONFIGS, ids=_ids(CONFIGS))
def test_config_loads(path: Path):
    cfg = load_config(path)
    assert cfg.source == str(path)
    assert cfg.task == "seg"
    assert cfg.data.train_split, "every config names its training split"
    if cfg.data.root is not None:
        assert not Path(cfg.data.root).is_absolute(), "configs carry relative placeholder roots only"
    patch = cfg.model.timm_kwargs.get("patch_size", 14 if "patch14" in cfg.model.backbone else None)
    if patch:  # a patch-14 name built with timm_kwargs patch_size: 16 is a patch-16 model
        assert all(s % patch == 0 for s in cfg.data.crop_size), f"patch-{patch} inputs must be multiples of {patch}"


@pytest.mark.parametrize("path", CONFIGS, ids=_ids(CONFIGS))
def test_config_file_style(path: Path):
    text = path.read_text()
    assert "_base_" not in text, "configs are flat: no inheritance"
    for n, line in enumerate(text.splitlines(), 1):
        assert len(line) <= 120, f"{path.name} line {n} is longer than 120 columns"
        assert "/work/" not in line and "/home/" not in line, f"{path.name} line {n}: no absolute paths"


@pytest.mark.filterwarnings("error")
@pytest.mark.parametrize("path", CONFIGS, ids=_ids(CONFIGS))
def test_config_round_trip(path: Path, tmp_path: Path):
    cfg = load_config(path)
    out = save_config(cfg, tmp_path / "sub" / "config.yaml")
    again = load_config(out)
    assert again == cfg
    assert again.source == str(out)


def _distinct_models() -> list[Path]:
    seen, paths = set(), []
    for path in CONFIGS:
        m = load_config(path).model
        key = (m.backbone, repr(m.timm_kwargs), repr(m.out_indices))
        if key not in seen:
            seen.add(key)
            paths.append(path)
    return paths


@pytest.mark.parametrize("path", _distinct_models(), ids=_ids(_distinct_models()))
def test_config_backbone_builds(path: Path):
    """timm accepts every model section (name, tag, timm_kwargs, out_indices); meta device: no memory, no download."""
    m = load_config(path).model
    with torch.device("meta"):
        backbone = build_backbone(m.backbone, method=m.method, out_indices=m.out_indices,
                                  adapter_init=m.adapter_init, **m.timm_kwargs)
    assert backbone.strides == [4, 8, 16, 32]
