"""Shared test helpers: tiny timm models (no downloads), the optional ../shared folder."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

import ivtune.tasks  # noqa: F401  (registers the seg, sod and det tasks and their config sections)

# pytest -n 2 runs two workers on the 2-core CI machine: one intra-op thread each avoids oversubscription
# (shared machines ran some tests ~30x slower with torch's default thread count)
torch.set_num_threads(1)

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


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


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
