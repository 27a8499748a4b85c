"""Segmentation heads and SegmentationModel on tiny ViT and Swin IV backbones (no downloads)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from ivtune import build_backbone
from ivtune.backbones.neck import LayerNorm2d
from ivtune.errors import ConfigError, InputShapeError
from ivtune.tasks.seg.decoder import SEG_HEADS, SegFormerHead, UperNetHead, build_seg_head
from ivtune.tasks.seg.model import SegmentationModel

K = 5
TINY = {
    "vit": ("vit_small_patch16_224", dict(depth=2, embed_dim=64, num_heads=2)),
    "swin": ("swin_tiny_patch4_window7_224", dict(embed_dim=32, depths=(1, 1, 2, 1), num_heads=(1, 2, 4, 8))),
}
SIZES = {"vit": [(64, 64), (64, 96)], "swin": [(64, 64), (96, 128)]}
SMALL_HEAD = {"segformer": dict(embed_dim=16), "upernet": dict(channels=16)}


def _model(family: str, head: str, **kw) -> SegmentationModel:
    torch.manual_seed(0)
    name, kwargs = TINY[family]
    return SegmentationModel(build_backbone(name, **kwargs), head, num_classes=K, head_kwargs=SMALL_HEAD[head], **kw)


def _pair(h: int, w: int, b: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.randn(b, 3, h, w), torch.randn(b, 1, h, w)


@pytest.mark.parametrize("head", sorted(SEG_HEADS))
@pytest.mark.parametrize("family", sorted(TINY))
def test_output_shape_square_and_non_square(family, head):
    model = _model(family, head)
    for h, w in SIZES[family]:
        for mode in (True, False):
            model.train(mode)
            logits = model(*_pair(h, w))
            assert logits.shape == (2, K, h, w)
            assert torch.isfinite(logits).all()
    pred = model.predict(*_pair(*SIZES[family][-1]))
    assert pred.dtype == torch.int64 and pred.shape == (2, *SIZES[family][-1])
    assert not model.training  # predict restores the mode it found (eval here)


@pytest.mark.parametrize("head", sorted(SEG_HEADS))
@pytest.mark.parametrize("family", sorted(TINY))
def test_gradients_reach_head_not_frozen_backbone(family, head):
    model = _model(family, head)
    frozen_before = {n: p.requires_grad for n, p in model.backbone.named_parameters()}
    h, w = SIZES[family][-1]
    model.train()
    logits = model(*_pair(h, w))
    mask = torch.randint(0, K, (2, h, w))
    mask[:, :4] = 255
    model.loss(logits, mask).backward()

    assert {n: p.requires_grad for n, p in model.backbone.named_parameters()} == frozen_before
    assert any(not p.requires_grad for p in model.backbone.parameters())  # iv-tuning keeps most of it frozen
    for n, p in model.backbone.named_parameters():
        if not p.requires_grad:
            assert p.grad is None, n
    trainable_head = list(model.head.named_parameters())
    if model.neck is not None:
        trainable_head += [(f"neck.{n}", p) for n, p in model.neck.named_parameters()]
    for n, p in trainable_head:
        assert p.requires_grad, n
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, n


def test_level_norm_default_follows_hierarchy():
    assert _model("swin", "segformer").neck is not None
    assert _model("vit", "segformer").neck is None
    swin = _model("swin", "segformer", level_norm=False)
    assert swin.neck is None
    vit = _model("vit", "upernet", level_norm=True)
    assert [n.normalized_shape[0] for n in vit.neck] == vit.backbone.out_channels


def test_layernorm2d_normalises_channels():
    x = torch.randn(2, 8, 5, 7)
    ref = F.layer_norm(x.permute(0, 2, 3, 1), (8,)).permute(0, 3, 1, 2)
    torch.testing.assert_close(LayerNorm2d(8)(x), ref)


@pytest.mark.parametrize("head", sorted(SEG_HEADS))
@pytest.mark.parametrize(
    "sizes",
    [
        [(120, 160), (60, 80), (30, 40), (15, 20)],  # 480x640 (MFNet) at strides 4..32
        [(28, 36), (14, 18), (7, 9), (4, 5)],  # odd sizes: ceil(H/s) of a 112x144 input
        [(13, 11), (7, 6), (4, 3), (2, 2)],  # portrait, odd, not halving exactly
    ],
)
def test_heads_on_non_square_non_power_of_two_levels(head, sizes):
    chans = [8, 12, 16, 24]
    torch.manual_seed(0)
    module = build_seg_head(head, chans, K, **SMALL_HEAD[head])
    feats = [torch.randn(2, c, h, w) for c, (h, w) in zip(chans, sizes, strict=True)]
    out = module(feats)
    assert out.shape == (2, K, *sizes[0])
    assert torch.isfinite(out).all()


def test_build_seg_head_registry_and_errors():
    assert SEG_HEADS == {"segformer": SegFormerHead, "upernet": UperNetHead}
    assert isinstance(build_seg_head("upernet", [4, 4], 3, channels=8, pool_scales=(1, 2)), UperNetHead)
    with pytest.raises(ConfigError, match="segformer, upernet"):
        build_seg_head("fpn", [4, 4], 3)
    with pytest.raises(ConfigError, match="embed_dim"):
        build_seg_head("upernet", [4, 4], 3, embed_dim=8)
    with pytest.raises(ConfigError, match="in_channels"):
        SegFormerHead([], 3)
    with pytest.raises(ConfigError, match="num_classes"):
        SegFormerHead([4], 0)


def test_head_rejects_wrong_features():
    head = SegFormerHead([4, 8], 3, embed_dim=8)
    with pytest.raises(InputShapeError, match="2 feature levels"):
        head([torch.randn(1, 4, 8, 8)])
    with pytest.raises(InputShapeError, match="level 1 expects an NCHW map with 8 channels"):
        head([torch.randn(1, 4, 8, 8), torch.randn(1, 6, 4, 4)])


def test_upernet_batch_one_training_error_is_clear():
    head = UperNetHead([4, 4], 3, channels=8)
    feats = [torch.randn(1, 4, 8, 8), torch.randn(1, 4, 4, 4)]
    with pytest.raises(InputShapeError, match="batch size"):
        head(feats)
    head.eval()
    assert head(feats).shape == (1, 3, 8, 8)


def test_loss_ignores_ignore_index():
    model = _model("vit", "segformer")
    torch.manual_seed(1)
    logits = torch.randn(2, K, 8, 12, requires_grad=True)
    mask = torch.full((2, 8, 12), 255, dtype=torch.long)
    mask[1, 3, 5] = 2
    loss = model.loss(logits, mask)
    alone = F.cross_entropy(logits[1, :, 3, 5][None], torch.tensor([2]))
    torch.testing.assert_close(loss, alone)
    # the mean runs over labelled pixels only: a second labelled pixel averages with the first
    mask[0, 0, 0] = 4
    both = (alone + F.cross_entropy(logits[0, :, 0, 0][None], torch.tensor([4]))) / 2
    torch.testing.assert_close(model.loss(logits, mask), both)
    # all ignored: 0 with a graph, not NaN
    empty = model.loss(logits, torch.full((2, 8, 12), 255))
    assert empty.item() == 0.0
    empty.backward()


def test_loss_input_errors():
    model = _model("vit", "segformer")
    logits = torch.randn(2, K, 8, 8)
    with pytest.raises(InputShapeError, match="mask must be"):
        model.loss(logits, torch.zeros(2, 1, 8, 8, dtype=torch.long))
    with pytest.raises(InputShapeError, match="integer class indices"):
        model.loss(logits, torch.zeros(2, 8, 8))
    with pytest.raises(InputShapeError, match=r"values \[7\]"):
        model.loss(logits, torch.full((2, 8, 8), 7))


def test_model_config_errors():
    name, kwargs = TINY["vit"]
    bb = build_backbone(name, **kwargs)
    with pytest.raises(ConfigError, match="num_classes is required"):
        SegmentationModel(bb, "segformer")
    with pytest.raises(ConfigError, match="Available: segformer, upernet"):
        SegmentationModel(bb, "deeplab", num_classes=3)
    with pytest.raises(ConfigError, match="ignore_index=2"):
        SegmentationModel(bb, num_classes=3, ignore_index=2)
    head = SegFormerHead(bb.out_channels, 3, embed_dim=8)
    model = SegmentationModel(bb, head)
    assert model.head is head and model.num_classes == 3 and model.ignore_index == 255
    with pytest.raises(ConfigError, match="has 3"):
        SegmentationModel(bb, head, num_classes=4)
