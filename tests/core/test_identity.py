"""Zero-initialised adapters reproduce the frozen timm model exactly (docs/METHOD.md section 13)."""

from __future__ import annotations

import pytest
import timm
import torch

from ivtune import build_backbone

from ..helpers import TINY, pair


def plain_and_iv(key: str):
    name, kwargs, _, _ = TINY[key]
    torch.manual_seed(0)
    iv = build_backbone(name, adapter_init="zeros", **kwargs)
    torch.manual_seed(0)  # the factory builds the timm model first, so the same seed gives the same weights
    plain = timm.create_model(name, num_classes=0, **{**iv.family.default_kwargs, **kwargs})
    return plain.eval(), iv.eval()


@pytest.mark.parametrize("key", list(TINY))
@pytest.mark.parametrize("shape", ["square", "non_square"])
def test_zero_init_equals_timm(key, shape):
    plain, iv = plain_and_iv(key)
    hw = TINY[key][2] if shape == "square" else TINY[key][3]
    vis, ir = pair(hw)
    with torch.no_grad():
        uniq = sorted(set(iv.out_indices))  # tiny depth-2 ViTs tap blocks [0, 0, 1, 1]; timm de-duplicates
        taps_ref = plain.forward_intermediates(vis, indices=uniq, intermediates_only=True)
        by_index = dict(zip(uniq, taps_ref, strict=True))
        ref = [by_index[i] for i in iv.out_indices]
        taps = iv.forward_intermediates(vis, ir)
        outs = iv(vis, ir)
    assert len(taps) == len(ref) == 4
    for a, b in zip(taps, ref, strict=True):
        assert torch.equal(a, b)
    if iv.pyramid is not None:  # ViT/EVA: the pyramid of identical taps is identical
        for a, b in zip(outs, iv.pyramid(ref, hw), strict=True):
            assert torch.equal(a, b)
    else:
        for a, b in zip(outs, ref, strict=True):
            assert torch.equal(a, b)


@pytest.mark.parametrize("key", list(TINY))
def test_output_geometry(key):
    name, kwargs, _, hw = TINY[key]
    iv = build_backbone(name, **kwargs).eval()
    vis, ir = pair(hw, ir_channels=3)
    with torch.no_grad():
        outs = iv(vis, ir)
    assert iv.strides == [4, 8, 16, 32]
    for out, c, s in zip(outs, iv.out_channels, iv.strides, strict=True):
        assert out.shape == (2, c, -(-hw[0] // s), -(-hw[1] // s))
        assert torch.isfinite(out).all()


def test_prefix_tokens_bypass_adapters():
    # DINOv2 with 4 registers: 5 prefix tokens; adapters only see h*w patch tokens (a hard-coded 1 would crash)
    name, kwargs, _, hw = TINY["dinov2_reg"]
    iv = build_backbone(name, **kwargs)
    assert iv.num_prefix_tokens == 5
    vis, ir = pair(hw)
    assert iv(vis, ir)[2].shape[-2:] == (hw[0] // 14, hw[1] // 14)


@pytest.mark.parametrize("key", ["vit", "swin"])
def test_vis_only_full_is_the_plain_model(key):
    plain, _ = plain_and_iv(key)
    name, kwargs, _, hw = TINY[key]
    torch.manual_seed(0)
    vis_only = build_backbone(name, method="vis-only-full", **kwargs).eval()
    assert all(p.requires_grad for p in vis_only.parameters())
    assert sum(p.numel() for p in vis_only.parameters()) == sum(p.numel() for p in plain.parameters())
    vis, ir = pair(hw)
    with torch.no_grad():
        a = vis_only.forward_intermediates(vis, ir)
        b = vis_only.forward_intermediates(vis, ir + 5.0)  # the IR image is ignored
        ref = plain.forward_intermediates(vis, indices=sorted(set(vis_only.out_indices)), intermediates_only=True)
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
    assert torch.equal(a[-1], ref[-1])
