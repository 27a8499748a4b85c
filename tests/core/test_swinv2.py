"""Swin V2 (timm ``SwinTransformerV2``): its own post-norm recipe, Swin's stage prompts, exact counts.

docs/METHOD.md sections 4.4 and 7. The shared backbone contract (family lookup, identity, training, files) is in
``test_beyond_paper.py``.
"""

from __future__ import annotations

import pytest
import torch
from timm.models.swin_transformer_v2 import SwinTransformerV2Block

from ivtune import build_backbone
from ivtune.backbones.families import recipe_for
from ivtune.backbones.swinv2 import SWINV2
from ivtune.inject.lora import LoRALinear

from ..helpers import assert_meta_counts, pair
from .beyond_paper import TINY_BEYOND, hierarchical_trainable, perturb_norms, stage_widths

NAME, KWARGS, SIZES = TINY_BEYOND["swinv2"]


def test_blocks_are_swins_four_stages():
    model = build_backbone(NAME, **KWARGS)
    assert [p for p, _ in SWINV2.stage_blocks(model.model)] == [f"layers.{s}.blocks" for s in range(4)]


def test_recipe_halves_equal_the_timm_block():
    """Post-norm: ``x + DP(LN1(Attn(x)))`` then ``x + DP(LN2(MLP(x)))``; with a shifted window (odd block)."""
    model = build_backbone(NAME, **{**KWARGS, "img_size": (192, 256)}).eval()  # stage 2: 12x16 > window 8
    blk = perturb_norms(model.model.layers[2].blocks[1].block)  # timm's post-norms start at zero
    assert isinstance(blk, SwinTransformerV2Block) and blk.shift_size == (4, 4)
    recipe = recipe_for(blk)
    x = torch.randn(2, 12, 16, blk.dim)
    with torch.no_grad():
        t = recipe.mlp(blk, recipe.attn(blk, x.reshape(2, 12 * 16, -1), (12, 16)), (12, 16))
        assert torch.equal(t.reshape(x.shape), blk(x))


def test_stage_prompt_is_the_stage_input():
    model = build_backbone(NAME, **KWARGS).eval()
    seen: dict[tuple[int, int], torch.Tensor] = {}
    for s, stage in enumerate(model.model.layers):
        for i, blk in enumerate(stage.blocks):
            blk.register_forward_pre_hook(lambda _m, _a, kw, key=(s, i): seen.__setitem__(key, kw["z"]),
                                          with_kwargs=True)
    with torch.no_grad():
        outs = model(*pair(SIZES[1]))
    assert seen[(2, 0)] is seen[(2, 1)]  # fixed within a stage
    for s in (1, 2, 3):  # the merged previous stage output
        with torch.no_grad():
            merged = model.model.layers[s].downsample(outs[s - 1].permute(0, 2, 3, 1))
        assert torch.equal(seen[(s, 0)], merged.flatten(1, 2))


def test_lora_reaches_the_qkv_whose_bias_is_added_outside():
    # SwinV2's attention adds q/v biases with F.linear(x, qkv.weight, bias) unless qkv_bias_separate: the LoRA
    # baseline must switch it, or its qkv update would be skipped silently
    model = build_backbone(NAME, method="lora", **KWARGS).eval()
    perturb_norms(model.model)  # timm's post-norms start at zero: the attention branch would add nothing
    attn = model.model.layers[0].blocks[0].block.attn
    assert isinstance(attn.qkv, LoRALinear) and attn.qkv_bias_separate
    vis, ir = pair(SIZES[0])
    with torch.no_grad():
        before = model(vis, ir)[0]
        attn.qkv.lora.lora_B.normal_()
        after = model(vis, ir)[0]
    assert not torch.allclose(before, after)


# (timm name, C0, blocks per stage, trainable, frozen): Swin's formula, IR stem conv 4x4 + LN (51 C0)
SWINV2_COUNTS = [
    ("swinv2_tiny_window8_256", 96, (2, 2, 6, 2), 1_593_796, 27_578_154),
    ("swinv2_small_window16_256", 96, (2, 2, 18, 2), 3_239_812, 48_959_418),
    ("swinv2_base_window12to24_192to384", 128, (2, 2, 18, 2), 4_180_804, 86_893_816),
    ("swinv2_large_window12to24_192to384", 192, (2, 2, 18, 2), 6_062_788, 195_202_932),
]


@pytest.mark.parametrize("name, c0, depths, trainable, frozen", SWINV2_COUNTS, ids=[s[0] for s in SWINV2_COUNTS])
def test_exact_full_size_counts_on_meta(name, c0, depths, trainable, frozen):
    assert hierarchical_trainable(stage_widths(c0, depths), c0, ir_embed_per_channel=51) == trainable
    model = assert_meta_counts(name, trainable, frozen)
    assert model.out_channels == [c0, 2 * c0, 4 * c0, 8 * c0]
