"""The neck pieces beside the backbone: the per-level LayerNorm2d and input padding to the patch multiple."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ivtune.backbones.neck import LayerNorm2d, pad_to_multiple


def test_layernorm2d_normalises_each_pixel_over_channels():
    norm = LayerNorm2d(8, eps=1e-6)
    with torch.no_grad():
        norm.weight.uniform_(0.5, 1.5)
        norm.bias.uniform_(-1, 1)
    x = torch.randn(2, 8, 5, 7)  # non-square
    ref = F.layer_norm(x.permute(0, 2, 3, 1), (8,), norm.weight, norm.bias, 1e-6).permute(0, 3, 1, 2)
    assert torch.equal(norm(x), ref)
    assert [p.shape for p in norm.parameters()] == [p.shape for p in nn.LayerNorm(8).parameters()]


def test_pad_to_multiple_pads_bottom_right_with_zeros():
    x = torch.randn(2, 3, 60, 90)
    padded, hw = pad_to_multiple(x, 16)
    assert hw == (60, 90) and padded.shape == (2, 3, 64, 96)
    assert torch.equal(padded[..., :60, :90], x)
    assert not padded[..., 60:, :].any() and not padded[..., :, 90:].any()


def test_pad_to_multiple_leaves_fitting_input_alone():
    x = torch.randn(1, 1, 56, 84)
    padded, hw = pad_to_multiple(x, 14)
    assert padded is x and hw == (56, 84)
