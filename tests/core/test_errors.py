"""Bad input gives an ivtune error naming the shapes / model and the fix, never a stack trace from inside timm."""

from __future__ import annotations

import pytest
import torch

from ivtune import build_backbone
from ivtune.errors import ConfigError, InputShapeError, UnsupportedModelError

from ..helpers import TINY


@pytest.fixture(scope="module")
def vit():
    name, kwargs, _, _ = TINY["vit"]
    return build_backbone(name, **kwargs).eval()


@pytest.mark.parametrize(
    "vis_shape, ir_shape, match",
    [
        ((1, 3, 64, 96), (1, 1, 64, 80), r"same height and width, got vis \(64, 96\) and ir \(64, 80\)\. Resize"),
        ((1, 4, 64, 96), (1, 1, 64, 96), r"vis must have 3 channels, got 4 .*alpha"),
        ((1, 3, 64, 96), (1, 2, 64, 96), r"ir must have 1 or 3 channels, got 2"),
        ((2, 3, 64, 96), (1, 1, 64, 96), r"same batch size, got 2 and 1"),
        ((1, 3, 60, 96), (1, 1, 60, 96), r"Input 60x96 is not a multiple of the patch size 16x16 .*Pad to 64x96"),
        ((3, 64, 96), (1, 1, 64, 96), r"vis must be a batch \(B, C, H, W\), got shape \(3, 64, 96\)"),
    ],
)
def test_bad_shapes(vit, vis_shape, ir_shape, match):
    with pytest.raises(InputShapeError, match=match):
        vit(torch.zeros(vis_shape), torch.zeros(ir_shape))


def test_integer_images_rejected(vit):
    with pytest.raises(InputShapeError, match=r"floating-point.*float\(\)"):
        vit(torch.zeros(1, 3, 64, 64, dtype=torch.uint8), torch.zeros(1, 1, 64, 64))


def test_errors_are_value_errors(vit):
    with pytest.raises(ValueError):
        vit(torch.zeros(1, 3, 64, 64), torch.zeros(1, 1, 32, 64))


def test_unsupported_model_lists_families():
    with pytest.raises(UnsupportedModelError, match=r"'resnet18'.*Supported families: vit .*eva .*swin"):
        build_backbone("resnet18")


def test_unknown_timm_name_suggests():
    with pytest.raises(UnsupportedModelError, match=r"not a timm model name.*vit_small_patch16_224"):
        build_backbone("vit_smal_patch16_224")


def test_unsupported_block_named():
    from timm.models.vision_transformer import ResPostBlock

    name, kwargs, _, _ = TINY["vit"]
    match = r"Unsupported block 'ResPostBlock' at blocks\.0\. Supported: Block"
    with pytest.raises(UnsupportedModelError, match=match):
        build_backbone(name, block_fn=ResPostBlock, **kwargs)


def test_bad_out_indices():
    name, kwargs, _, _ = TINY["vit"]
    with pytest.raises(UnsupportedModelError, match=r"\[5\] outside the model's 2 blocks"):
        build_backbone(name, out_indices=[0, 1, 1, 5], **kwargs)
    with pytest.raises(UnsupportedModelError, match="exactly 4 out_indices"):
        build_backbone(name, out_indices=[0, 1], **kwargs)


def test_swin_out_indices_subset():
    name, kwargs, _, hw = TINY["swin"]
    model = build_backbone(name, out_indices=[1, -1], **kwargs)
    assert model.strides == [8, 32] and model.out_channels == [64, 256]
    outs = model(torch.zeros(1, 3, *hw), torch.zeros(1, 1, *hw))
    assert [o.shape[1] for o in outs] == [64, 256]


def test_bad_method_and_init():
    with pytest.raises(ConfigError, match=r"unknown method 'lora2'\. Available: .*full.*iv-tuning"):
        build_backbone("vit_small_patch16_224", method="lora2")
    with pytest.raises(ConfigError, match="adapter_init must be one of"):
        build_backbone("vit_small_patch16_224", adapter_init="ones")
