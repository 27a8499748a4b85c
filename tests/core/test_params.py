"""Exact parameter counts from docs/METHOD.md section 7, on the meta device (no weights, no memory)."""

from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner

from ivtune import build_backbone, count_parameters
from ivtune.cli import main
from ivtune.modules import EMPG, SFT, HybridAdapter, HybridOperation, InternalPromptAdapter, PromptStem


def n_params(m: torch.nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


@pytest.mark.parametrize(
    "module, expected",
    [
        (HybridOperation(64), 8_608),
        (HybridOperation(8), 180),
        (SFT(96), 4 * 96),
        (HybridAdapter(1024), 133 * 1024 + 8_672),
        (HybridAdapter(1024), 144_864),
        (InternalPromptAdapter(1024), 23_560),
        (EMPG(1024), 25_796),
        (EMPG(768, hidden=64), 193 * 768 + 8_736),
        (PromptStem(192), 25 * 192 + 196 + 2 * 192),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, torch.nn.Module) else str(v),
)
def test_component_counts(module, expected):
    assert n_params(module) == expected


# (timm name, trainable) from docs/METHOD.md section 7
EXACT = [
    ("swin_tiny_patch4_window7_224", 1_593_796),
    ("swin_base_patch4_window12_384", 4_180_804),
    ("swin_large_patch4_window12_384", 6_062_788),
    ("vit_base_patch16_224", 3_695_236),
    ("vit_large_patch16_224", 8_899_652),
    ("eva02_large_patch14_224", 8_715_332),
    ("vit_large_patch14_dinov2", 8_715_332),
    ("vit_base_patch14_dinov2", 3_556_996),
    ("vit_small_patch14_dinov2", 1_882_756),
    ("vit_small_patch16_224", 1_951_876),
]


@pytest.mark.parametrize("name, trainable", EXACT)
def test_exact_trainable_counts(name, trainable):
    with torch.device("meta"):
        model = build_backbone(name)
    counts = count_parameters(model)
    assert counts["trainable"] == trainable
    assert counts["total"] == counts["trainable"] + counts["frozen"]
    assert counts["ratio"] == pytest.approx(trainable / counts["frozen"])


def test_full_method_trains_everything():
    with torch.device("meta"):
        model = build_backbone("swin_tiny_patch4_window7_224", method="full")
    counts = count_parameters(model)
    assert counts["frozen"] == 0
    assert counts["trainable"] == 1_593_796 + 27_519_354  # IV modules + the timm backbone


def test_cli_params_json():
    result = CliRunner().invoke(main, ["params", "swin_large_patch4_window12_384", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert set(data) == {"backbone", "method", "trainable", "frozen", "total", "ratio"}
    assert data["trainable"] == 6_062_788
    assert data["frozen"] == 195_198_516
    assert data["ratio"] == pytest.approx(6_062_788 / 195_198_516)


def test_cli_params_text_and_bad_method():
    ok = CliRunner().invoke(main, ["params", "vit_base_patch16_224"])
    assert ok.exit_code == 0 and "3,695,236" in ok.output
    bad = CliRunner().invoke(main, ["params", "vit_base_patch16_224", "--method", "nope"])
    assert bad.exit_code == 2
    assert "unknown method 'nope'" in bad.output and "iv-tuning" in bad.output
