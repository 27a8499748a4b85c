"""The FCOS paper's exp(s_i * x) box sides: same layout as torchvision's head, no dead sides, wired as the default."""

from __future__ import annotations

import pytest
import torch
from torchvision.models.detection.fcos import FCOSRegressionHead

from ivtune import build_backbone
from ivtune.errors import ConfigError
from ivtune.tasks.det.fcos_regression import ExpScaleRegressionHead
from ivtune.tasks.det.model import DetectionModel


def pair_of_heads(channels: int = 32, levels: int = 2) -> tuple[FCOSRegressionHead, ExpScaleRegressionHead]:
    torch.manual_seed(0)
    reference = FCOSRegressionHead(channels, 1)
    ours = ExpScaleRegressionHead(channels, 1, levels)
    missing, unexpected = ours.load_state_dict(reference.state_dict(), strict=False)
    assert missing == ["scales"] and not unexpected  # the same tower and output layers, plus the scales
    return reference, ours


def test_sides_are_exp_of_the_scaled_raw_output_in_torchvisions_layout():
    reference, ours = pair_of_heads()
    with torch.no_grad():
        ours.scales.copy_(torch.tensor([1.0, 0.5]))
        for conv in (reference.bbox_reg, ours.bbox_reg):  # make the raw outputs large enough to read
            conv.weight.mul_(10.0)  # raw std ~1: below the clamp
    maps = [torch.randn(2, 32, 6, 8), torch.randn(2, 32, 3, 4)]
    with torch.no_grad():
        relu_sides, ref_ctr = reference(maps)
        exp_sides, ctr = ours(maps)
    assert exp_sides.shape == relu_sides.shape == (2, 6 * 8 + 3 * 4, 4)
    torch.testing.assert_close(ctr, ref_ctr)
    assert (exp_sides > 0).all()
    # where torchvision's ReLU passes the raw value r, ours is exp(s_level * r)
    scale = torch.cat([torch.full((48,), 1.0), torch.full((12,), 0.5)])[None, :, None].expand_as(exp_sides)
    live = relu_sides > 0
    assert live.float().mean() > 0.3
    torch.testing.assert_close(torch.log(exp_sides)[live] / scale[live], relu_sides[live])


def test_a_side_pushed_below_zero_still_gets_a_gradient():
    reference, ours = pair_of_heads()
    with torch.no_grad():
        for conv in (reference.bbox_reg, ours.bbox_reg):
            conv.bias[0] = -5.0  # the left side negative at every location: torchvision's ReLU is flat there
    maps = [torch.randn(2, 32, 6, 8), torch.randn(2, 32, 3, 4)]
    for head in (reference, ours):
        sides, _ = head(maps)
        sides[..., 0].sum().backward()
    assert reference.bbox_reg.bias.grad[0] == 0  # dead: this side can never grow again
    assert ours.bbox_reg.bias.grad[0] > 0
    assert ours.scales.grad is not None and ours.scales.grad.abs().sum() > 0


def test_level_count_mismatch_is_an_error_naming_both_counts():
    _, ours = pair_of_heads(levels=3)
    with pytest.raises(ValueError, match="3 pyramid levels but got 2"):
        ours([torch.randn(1, 32, 4, 4), torch.randn(1, 32, 2, 2)])


def test_detection_model_uses_exp_sides_by_default_and_relu_on_request():
    backbone = build_backbone("vit_small_patch16_224", depth=2, embed_dim=64, num_heads=2, dynamic_img_size=True)
    model = DetectionModel(backbone, "fcos", num_classes=3, fpn_channels=32)
    head = model.detector.head.regression_head
    assert isinstance(head, ExpScaleRegressionHead) and head.scales.numel() == len(model.neck.strides) == 5
    plain = DetectionModel(backbone, "fcos", num_classes=3, fpn_channels=32, fcos_box_sides="relu")
    assert type(plain.detector.head.regression_head) is FCOSRegressionHead
    with pytest.raises(ConfigError, match="exp, relu"):
        DetectionModel(backbone, "fcos", num_classes=3, fcos_box_sides="softplus")
