"""SAM 2 Hiera (timm ``HieraDet``): stage prompts, stage-entry blocks, IR stem geometry, input sizes, exact counts.

docs/METHOD.md sections 4.3 and 7. The shared backbone contract (family lookup, identity, training, files) is in
``test_beyond_paper.py``.
"""

from __future__ import annotations

import pytest
import timm
import torch
from click.testing import CliRunner

from ivtune import build_backbone
from ivtune.backbones.hiera import stage_input
from ivtune.builder import family_for_model_name
from ivtune.cli import main
from ivtune.errors import InputShapeError, UnsupportedModelError
from ivtune.inject.wrappers import AdaptedBlock

from ..helpers import assert_meta_counts, pair
from .beyond_paper import TINY_BEYOND, hierarchical_trainable, stage_widths

NAME, KWARGS, SIZES = TINY_BEYOND["sam2_hiera"]


def test_stage_entry_blocks_adapt_at_the_new_width():
    model = build_backbone(NAME, **KWARGS)
    blocks = [b for b in model.model.blocks]
    assert all(isinstance(b, AdaptedBlock) for b in blocks)
    # blocks 1, 3, 5 enter stages 1-3: input width C, output width 2C; both insertion points sit after the widening
    widths = [b.iv_attn.adapter.sft.gamma.numel() for b in blocks]
    assert widths == [32, 64, 64, 128, 128, 256]
    assert [b.iv_mlp.prompt.up.out_features for b in blocks] == widths


def test_internal_prompt_is_p0_then_each_stage_input():
    model = build_backbone(NAME, **KWARGS).eval()
    seen: dict[int, torch.Tensor] = {}
    for i, blk in enumerate(model.model.blocks):  # AdaptedBlock.forward(x, *, z, hw, ...)
        blk.register_forward_pre_hook(lambda _m, _args, kwargs, i=i: seen.__setitem__(i, kwargs["z"]),
                                      with_kwargs=True)
    vis, ir = pair(SIZES[1])
    with torch.no_grad():
        outs = model(vis, ir)
        x = model.model.patch_embed(vis)
        b, h, w, c = x.shape
        p0 = model.input_prompt(x.reshape(b, -1, c), ir.expand(-1, 3, -1, -1), (h, w))
    assert torch.equal(seen[0], p0)  # stage 0 (one block): P0 alone
    stages = [range(0, 1), range(1, 3), range(3, 5), range(5, 6)]
    for s, blocks in enumerate(stages[1:], start=1):
        prev = outs[s - 1]  # the previous stage's output: the stage input
        with torch.no_grad():
            want = stage_input(model.model.blocks[blocks[0]], prev.flatten(2).transpose(1, 2), tuple(prev.shape[-2:]))
        assert want.shape == (2, outs[s].shape[-2] * outs[s].shape[-1], outs[s].shape[1])  # the stage's grid, width
        for i in blocks:
            assert seen[i] is seen[blocks[0]], f"block {i}: the prompt is fixed within stage {s}"
        assert torch.equal(seen[blocks[0]], want)


def test_ir_patch_embed_copies_the_visible_geometry():
    model = build_backbone(NAME, **KWARGS)
    vis_conv, ir_conv = model.model.patch_embed.proj, model.ir_patch_embed.proj
    assert (ir_conv.kernel_size, ir_conv.stride, ir_conv.padding) == ((7, 7), (4, 4), (3, 3))
    assert (vis_conv.kernel_size, vis_conv.stride, vis_conv.padding) == (ir_conv.kernel_size, ir_conv.stride,
                                                                         ir_conv.padding)
    assert model.patch_size == (4, 4) and model.input_multiple == 32
    assert sum(p.numel() for p in model.ir_patch_embed.parameters()) == 148 * 32


@pytest.mark.parametrize("hw, padded", [((72, 100), (96, 128)), ((64, 90), (64, 96)), ((30, 64), (32, 64))])
def test_size_not_a_multiple_of_32_names_the_padded_size(hw, padded):
    model = build_backbone(NAME, **KWARGS)
    with pytest.raises(InputShapeError, match=rf"Input {hw[0]}x{hw[1]} is not a multiple of 32x32 \(the patch stride "
                       rf"4x4 times the 8x8 windowed position embedding.*Pad to {padded[0]}x{padded[1]}"):
        model(*pair(hw, batch=1))
    out = model(*pair(padded, batch=1))  # the suggested size runs
    assert out[0].shape[-2:] == (padded[0] // 4, padded[1] // 4)


def test_visible_only_and_frozen_methods_run_the_plain_blocks():
    name, kwargs = NAME, KWARGS
    torch.manual_seed(0)
    frozen = build_backbone(name, method="frozen", **kwargs).eval()
    torch.manual_seed(0)
    iv = build_backbone(name, adapter_init="zeros", **kwargs).eval()
    vis, ir = pair(SIZES[1])
    with torch.no_grad():  # same frozen weights, same IR entry at zero: the two loops agree exactly
        frozen.prompt_stem.load_state_dict(iv.prompt_stem.state_dict())
        frozen.ir_patch_embed.load_state_dict(iv.ir_patch_embed.state_dict())
        assert all(torch.equal(a, b) for a, b in zip(frozen(vis, ir), iv(vis, ir), strict=True))


def test_mae_hiera_is_rejected_with_the_supported_families():
    with pytest.raises(UnsupportedModelError, match=r"'hiera_tiny_224' \(timm.models.hiera\) has no IV-tuning recipe"
                       r"\. Supported families: vit .*, eva .*, swin .*, swinv2 .*, hieradet \(HieraDet, "
                       r"timm.models.hieradet_sam2\)\.$"):
        family_for_model_name("hiera_tiny_224")


# (timm name, C0, blocks per stage, trainable, frozen); widths double per stage; IR stem 7x7 conv: 148 C0
SAM2 = [
    ("sam2_hiera_tiny", 96, (1, 2, 7, 2), 1_692_964, 26_851_008),
    ("sam2_hiera_small", 96, (1, 2, 11, 2), 2_241_636, 33_948_864),
    ("sam2_hiera_base_plus", 112, (2, 3, 16, 3), 3_791_060, 68_677_504),
    ("sam2_hiera_large", 144, (2, 6, 36, 4), 9_394_996, 212_151_600),
]


@pytest.mark.parametrize("name, c0, depths, trainable, frozen", SAM2, ids=[s[0] for s in SAM2])
def test_exact_full_size_counts_on_meta(name, c0, depths, trainable, frozen):
    assert hierarchical_trainable(stage_widths(c0, depths), c0, ir_embed_per_channel=148) == trainable
    model = assert_meta_counts(name, trainable, frozen)
    assert model.out_channels == [c0, 2 * c0, 4 * c0, 8 * c0] and model.strides == [4, 8, 16, 32]


def test_cli_params_hiera_large():
    result = CliRunner().invoke(main, ["params", "sam2_hiera_large"])
    assert result.exit_code == 0, result.output
    assert "9,394,996" in result.output and "4.43%" in result.output


@pytest.mark.parametrize("name, extra, strides", [
    ("hieradet_small", {}, [4, 8, 16, 32]),  # layer scale (init_values 1e-5) in every block
    ("sam2_hiera_tiny", {"q_pool": 2}, [4, 8, 16, 16]),  # the last stage widens without pooling
])
def test_variants_identity_and_strides_from_the_blocks(name, extra, strides):
    # timm's feature_info says 32 for the last stage whatever q_pool is; the strides here follow the pooled blocks
    kwargs = {**KWARGS, **extra}
    torch.manual_seed(0)
    iv = build_backbone(name, adapter_init="zeros", **kwargs).eval()
    torch.manual_seed(0)
    plain = timm.create_model(name, num_classes=0, **kwargs).eval()
    vis, ir = pair(SIZES[2])
    with torch.no_grad():
        ref = plain.forward_intermediates(vis, intermediates_only=True)
        taps = iv.forward_intermediates(vis, ir)
    assert all(torch.equal(a, b) for a, b in zip(taps, ref, strict=True))
    assert iv.strides == strides and iv.out_channels == [32, 64, 128, 256]
    assert [t.shape[-1] for t in taps] == [SIZES[2][1] // s for s in strides]
