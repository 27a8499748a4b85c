"""``ivtune params --method M`` for every method, on the meta device, with counts derived by hand."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from ivtune.cli import main
from ivtune.methods import METHODS


def ir_entry(dim: int, patch: int, swin: bool) -> int:
    """IR patch embed (conv, + LN for Swin) + prompt stem (shared LN + EMPG with hidden 8: 27C + 196)."""
    embed = 3 * patch * patch * dim + dim + (2 * dim if swin else 0)
    return embed + 27 * dim + 196


# (stage width, blocks per stage)
SWIN_T = [(96, 2), (192, 2), (384, 6), (768, 2)]
SWIN_T_BACKBONE = 27_519_354
VIT_B, VIT_B_BACKBONE = [(768, 12)], 85_798_656
VIT_S, VIT_S_BACKBONE = [(384, 12)], 21_665_664


def per_block(stages, fn) -> int:
    return sum(n * fn(c) for c, n in stages)


def lora(c: int, r: int = 8) -> int:
    return r * (c + 3 * c) + r * (c + c)  # qkv (C -> 3C) and proj (C -> C): r * (in + out) each


def adaptformer(c: int, b: int = 64) -> int:
    return (c * b + b) + (b * c + c)  # down and up, with biases


def vpt(c: int, n: int = 10) -> int:
    return n * c


CASES = [
    # Swin-T (patch 4)
    ("swin_tiny_patch4_window7_224", "dual-branch", 2 * SWIN_T_BACKBONE, 0),
    ("swin_tiny_patch4_window7_224", "frozen", ir_entry(96, 4, True), SWIN_T_BACKBONE),
    ("swin_tiny_patch4_window7_224", "lora", ir_entry(96, 4, True) + per_block(SWIN_T, lora), SWIN_T_BACKBONE),
    ("swin_tiny_patch4_window7_224", "adaptformer", ir_entry(96, 4, True) + per_block(SWIN_T, adaptformer),
     SWIN_T_BACKBONE),
    ("swin_tiny_patch4_window7_224", "iv-tuning", 1_593_796, SWIN_T_BACKBONE),
    ("swin_tiny_patch4_window7_224", "vis-only-full", SWIN_T_BACKBONE, 0),
    # ViT-B/16
    ("vit_base_patch16_224", "dual-branch", 2 * VIT_B_BACKBONE, 0),
    ("vit_base_patch16_224", "frozen", ir_entry(768, 16, False), VIT_B_BACKBONE),
    ("vit_base_patch16_224", "lora", ir_entry(768, 16, False) + 12 * 36_864, VIT_B_BACKBONE),
    ("vit_base_patch16_224", "adaptformer", ir_entry(768, 16, False) + per_block(VIT_B, adaptformer), VIT_B_BACKBONE),
    ("vit_base_patch16_224", "vpt", ir_entry(768, 16, False) + per_block(VIT_B, vpt), VIT_B_BACKBONE),
    # ViT-S/16
    ("vit_small_patch16_224", "vpt", ir_entry(384, 16, False) + per_block(VIT_S, vpt), VIT_S_BACKBONE),
    ("vit_small_patch16_224", "lora", ir_entry(384, 16, False) + per_block(VIT_S, lora), VIT_S_BACKBONE),
]


def params_json(name: str, method: str) -> dict:
    result = CliRunner().invoke(main, ["params", name, "--method", method, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


@pytest.mark.parametrize("name, method, trainable, frozen", CASES)
def test_params_cli_exact(name, method, trainable, frozen):
    data = params_json(name, method)
    assert (data["method"], data["trainable"], data["frozen"]) == (method, trainable, frozen)
    assert data["total"] == trainable + frozen


def test_lora_vit_b_per_block_formula():
    assert lora(768) == 8 * (768 + 2304) + 8 * (768 + 768) == 36_864


def test_every_method_has_params():
    for method in METHODS:
        name = "vit_small_patch16_224"
        assert params_json(name, method)["trainable"] > 0


def test_vpt_on_swin_is_a_clear_cli_error():
    result = CliRunner().invoke(main, ["params", "swin_tiny_patch4_window7_224", "--method", "vpt"])
    assert result.exit_code == 2
    assert "does not support the swin family" in result.output and "vit, eva" in result.output
