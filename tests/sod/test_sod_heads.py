"""The CPNet-style decoder and SaliencyModel: exact parameter counts, shapes, loss formula, trainability."""

from __future__ import annotations

import pytest
import torch

from ivtune import build_backbone
from ivtune.errors import ConfigError
from ivtune.tasks.sod.decoder import CPDecoder
from ivtune.tasks.sod.model import SaliencyModel, iou_loss


@pytest.mark.parametrize("channels, expected", [([192, 384, 768, 1536], 19_228_372), ([1024] * 4, 18_398_932)])
def test_decoder_parameter_count_matches_authors(channels, expected):
    with torch.device("meta"):
        dec = CPDecoder(channels)
    assert sum(p.numel() for p in dec.parameters()) == expected  # docs/METHOD.md section 7 (Swin-L, EVA-02-L)


def _tiny(kind: str):
    if kind == "swin":
        bb = build_backbone("swin_tiny_patch4_window7_224", embed_dim=32, depths=(1, 1, 2, 1), num_heads=(1, 2, 4, 8),
                            img_size=(64, 96))
        return bb, (64, 96)
    return build_backbone("vit_small_patch16_224", depth=2, embed_dim=64, num_heads=2), (48, 80)


@pytest.mark.parametrize("kind", ["vit", "swin"])
def test_model_outputs_loss_and_gradients(kind):
    bb, (h, w) = _tiny(kind)
    model = SaliencyModel(bb, {"widths": (32, 16, 16, 8), "final_width": 8})
    assert (model.neck is not None) == (kind == "swin")  # per-level LayerNorm for Swin only
    vis, ir = torch.randn(2, 3, h, w), torch.rand(2, 3, h, w)
    outs = model(vis, ir)
    assert len(outs) == 4 and all(o.shape == (2, 1, h, w) for o in outs)
    mask = (torch.rand(2, 1, h, w) > 0.7).float()
    loss = model.loss(outs, mask)
    ref = sum(torch.nn.functional.binary_cross_entropy_with_logits(o, mask) + iou_loss(o, mask) for o in outs)
    assert torch.allclose(loss, ref) and torch.isfinite(loss)
    loss.backward()
    frozen = [n for n, p in model.backbone.named_parameters() if not p.requires_grad]
    assert frozen and all(p.grad is None for p in model.backbone.parameters() if not p.requires_grad)
    assert all(p.grad is not None for p in model.decoder.parameters())
    prob = model.predict(vis, ir)
    assert prob.shape == (2, 1, h, w) and 0 <= prob.min() and prob.max() <= 1 and model.training


def test_iou_loss_formula():
    logits = torch.tensor([[[[10.0, -10.0], [10.0, -10.0]]]])
    target = torch.tensor([[[[1.0, 0.0], [0.0, 0.0]]]])
    p = torch.sigmoid(logits)
    inter, total = (p * target).sum(), (p + target).sum()
    assert iou_loss(logits, target) == pytest.approx(float(1 - (inter + 1) / (total - inter + 1)))
    assert iou_loss(torch.full((1, 1, 4, 4), 20.0), torch.ones(1, 1, 4, 4)) == pytest.approx(0.0, abs=1e-6)


def test_bad_arguments():
    with pytest.raises(ConfigError, match="4 backbone levels"):
        CPDecoder([64, 64])
    bb, _ = _tiny("vit")
    with pytest.raises(ConfigError, match="head_kwargs"):
        SaliencyModel(bb, {"depth": 3})
