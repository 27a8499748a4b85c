"""What the tests import: tiny timm models (no downloads), the optional ../shared folder, random input pairs, and
the checks several files share. (tests/conftest.py holds only pytest's hooks and fixtures: the xdist controller
loads it too, and should not import torch for nothing.)"""

from __future__ import annotations

import copy
import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("IVTUNE_SHARED", REPO.parent / "shared"))
DINOV2_FILE = SHARED / "weights" / "dinov2_vits14_imgfocus.safetensors"

# name -> (timm name, timm kwargs, square input, non-square input); tiny so a forward takes milliseconds
TINY = {
    "vit": ("vit_small_patch16_224", dict(depth=2, embed_dim=64, num_heads=2), (64, 64), (64, 96)),
    "dinov2_reg": (
        "vit_small_patch14_reg4_dinov2",
        dict(depth=2, embed_dim=64, num_heads=2, img_size=56),
        (56, 56),
        (56, 84),
    ),
    "eva02": ("eva02_tiny_patch14_224", dict(depth=2, embed_dim=64, num_heads=2), (56, 56), (56, 84)),
    "swin": (
        "swin_tiny_patch4_window7_224",
        dict(embed_dim=32, depths=(1, 1, 2, 1), num_heads=(1, 2, 4, 8), img_size=(96, 128)),
        (96, 96),
        (96, 128),
    ),
}


def requires_shared(path: Path):
    """Skip (with the reason) when the read-only ../shared folder, present in CI, is missing."""
    return pytest.mark.skipif(not path.exists(), reason=f"{path} not found (../shared is only in the dev/CI checkout)")


def pair(hw: tuple[int, int], batch: int = 2, ir_channels: int = 1, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    vis = torch.randn(batch, 3, *hw, generator=g)
    ir = torch.randn(batch, ir_channels, *hw, generator=g)
    return vis, ir


def retarget(config: Path, dataset: str, out_dir: Path) -> Path:
    """A copy of ``config`` reading ``dataset`` instead: the options of its own dataset (typed keys of the data
    section, e.g. the synthetic ``num_samples``) are removed, since they are unknown keys for another dataset."""
    import yaml

    from ivtune.config.data import builder_options
    from ivtune.engine.task import get_task

    raw = yaml.safe_load(Path(config).read_text())
    entry = get_task(raw["task"]).datasets[raw["data"]["dataset"]]
    for name, _, _ in builder_options(entry.build, entry.excluded_options):
        raw["data"].pop(name, None)
    raw["data"]["dataset"] = dataset
    out = Path(out_dir) / f"{Path(config).stem}_{dataset}.yaml"
    out.write_text(yaml.safe_dump(raw, sort_keys=False))
    return out


def train_steps(model: torch.nn.Module, hw: tuple[int, int], steps: int, **adamw: float) -> torch.nn.Module:
    """``steps`` AdamW steps (lr 1e-2, ``adamw`` overrides) of ``model``'s trainable tensors on ``mean(out^2)`` over
    ``pair(hw, seed=step)``; returns a copy of the model as it was before them."""
    before = copy.deepcopy(model)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], **{"lr": 1e-2, **adamw})
    for step in range(steps):
        loss = sum(o.float().pow(2).mean() for o in model(*pair(hw, seed=step)))
        opt.zero_grad()
        loss.backward()
        opt.step()
    return before


def assert_only_iv_parameters_train(model: torch.nn.Module, hw: tuple[int, int], steps: int = 3) -> torch.nn.Module:
    """The trainable tensors are exactly the IV modules' (found structurally); after ``steps`` optimiser steps every
    IV parameter moved and every frozen one is unchanged and has no gradient. Returns the model before the steps."""
    iv_ids = {id(p) for m in model.iv_modules() for p in m.parameters()}
    assert {id(p) for p in model.parameters() if p.requires_grad} == iv_ids
    before = train_steps(model, hw, steps)
    old = dict(before.named_parameters())
    for n, p in model.named_parameters():
        if id(p) in iv_ids:
            assert not torch.equal(p, old[n]), f"IV parameter {n} did not move"
        else:
            assert p.grad is None and torch.equal(p, old[n]), f"frozen {n} changed or got a gradient"
    return before


def assert_meta_counts(name: str, trainable: int, frozen: int, **kwargs: object) -> torch.nn.Module:
    """Build the full-size backbone ``name`` on the meta device (no memory, no download), assert its exact trainable
    and frozen parameter counts, and return it."""
    from ivtune import build_backbone, count_parameters

    with torch.device("meta"):
        model = build_backbone(name, **kwargs)
    counts = count_parameters(model)
    assert (counts["trainable"], counts["frozen"]) == (trainable, frozen)
    return model
