"""DetectionModel on tiny backbones: training steps, eval outputs, ignore boxes, padding of two-image batches."""

from __future__ import annotations

import pytest
import torch

from ivtune import build_backbone
from ivtune.errors import ConfigError, InputShapeError
from ivtune.tasks.det.model import DetectionModel, default_size_divisible
from ivtune.tasks.det.task import rescale_boxes, to_coco_detections
from tests.det.detector_tester import check_eval_output, scene

VIT = ("vit_small_patch16_224", dict(depth=2, embed_dim=64, num_heads=2, dynamic_img_size=True))
SWIN = ("swin_tiny_patch4_window7_224", dict(embed_dim=32, depths=(1, 1, 2, 1), num_heads=(1, 2, 4, 8),
                                             img_size=(96, 128), strict_img_size=False))


def tiny_model(detector: str, spec=VIT, **kwargs) -> DetectionModel:
    torch.manual_seed(0)
    name, timm_kwargs = spec
    backbone = build_backbone(name, adapter_dropout=0.0, **timm_kwargs)
    return DetectionModel(backbone, detector, num_classes=3, fpn_channels=64, **kwargs)


@pytest.mark.parametrize("detector", ["fcos", "fasterrcnn"])
def test_few_training_steps_loss_finite_and_falls(detector):
    model = tiny_model(detector)
    samples = [scene(96, 128, [[16, 16, 56, 64], [70, 30, 110, 80]], [0, 2], 0),
               scene(80, 112, [[10, 40, 50, 76]], [1], 1)]  # non-square, not a multiple of 32
    vis, ir, targets = (list(x) for x in zip(*samples, strict=True))
    head = [p for n, p in model.named_parameters() if not n.startswith("backbone.") and p.requires_grad]
    back = [p for p in model.backbone.parameters() if p.requires_grad]
    opt = torch.optim.AdamW([{"params": head, "lr": 1e-3}, {"params": back, "lr": 1e-4}], weight_decay=1e-4)
    model.train()
    losses = []
    for _ in range(10 if detector == "fcos" else 4):  # FCOS must fall within 10 steps; Faster R-CNN: finite
        parts = model(vis, ir, targets)
        assert set(parts) == ({"classification", "bbox_regression", "bbox_ctrness"} if detector == "fcos" else
                              {"loss_objectness", "loss_rpn_box_reg", "loss_classifier", "loss_box_reg"})
        loss = sum(parts.values())
        assert torch.isfinite(loss)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(head + back, 1.0)
        opt.step()
        losses.append(loss.item())
    if detector == "fcos":
        assert losses[-1] < 0.8 * losses[0], losses
    # only trainable parts received gradients: the frozen timm weights of IV-tuning stay without .grad
    assert all(p.grad is None for p in model.backbone.parameters() if not p.requires_grad)


def test_eval_mode_returns_boxes_inside_each_unpadded_image_and_zero_based_labels():
    check_eval_output(tiny_model("fasterrcnn", detections_per_img=20, score_thresh=0.0).eval())


def test_rescale_to_original_coordinates_and_coco_format():
    # the transform resized a 200x400 image by (sy, sx) = (0.5, 0.25): boxes go back by division, then are clipped
    meta = {"scale": (0.5, 0.25), "orig_size": (200, 400)}
    boxes = torch.tensor([[10.0, 20.0, 50.0, 60.0], [90.0, 90.0, 120.0, 120.0]])
    back = rescale_boxes(boxes, meta)
    assert torch.allclose(back[0], torch.tensor([40.0, 40.0, 200.0, 120.0]))
    assert torch.allclose(back[1], torch.tensor([360.0, 180.0, 400.0, 200.0]))  # clipped to 400 x 200
    coco = to_coco_detections({"boxes": back, "scores": torch.tensor([0.9, 0.2]), "labels": torch.tensor([0, 2])}, 7)
    assert coco[0] == {"image_id": 7, "category_id": 1, "bbox": [40.0, 40.0, 160.0, 80.0], "score": 0.9}
    assert coco[1]["category_id"] == 3


def test_ignore_and_degenerate_boxes_are_not_training_targets():
    model = tiny_model("fcos")
    t = {"boxes": torch.tensor([[10.0, 10, 40, 40], [5, 5, 30, 30], [20, 20, 20, 35]]),
         "labels": torch.tensor([0, 1, 2]), "ignore": torch.tensor([False, True, False])}
    prepared = model.prepare_targets([t])[0]
    assert prepared["boxes"].tolist() == [[10.0, 10.0, 40.0, 40.0]] and prepared["labels"].tolist() == [0]
    frcnn = tiny_model("fasterrcnn")
    assert frcnn.prepare_targets([t])[0]["labels"].tolist() == [1]  # + background slot
    # the loss with the ignored box equals the loss without it
    vis, ir, _ = scene(64, 96, [[10, 10, 40, 40]], [0])
    model.train()
    with_ignore = model([vis], [ir], [t])
    without = model([vis], [ir], [{"boxes": t["boxes"][:1], "labels": t["labels"][:1]}])
    for k in with_ignore:
        assert torch.equal(with_ignore[k], without[k]), k
    # an image whose only box is ignored is a negative: a finite loss, no crash
    only_ignored = {"boxes": t["boxes"][1:2], "labels": t["labels"][1:2], "ignore": torch.tensor([True])}
    assert all(torch.isfinite(v) for v in model([vis], [ir], [only_ignored]).values())
    with pytest.raises(InputShapeError, match="0-based"):
        model.prepare_targets([{"boxes": t["boxes"][:1], "labels": torch.tensor([3])}])


@pytest.mark.parametrize("spec", [VIT, SWIN], ids=["vit", "swin"])
def test_two_image_batch_padding(spec):
    model = tiny_model("retinanet", spec)
    assert model.size_divisible == 32
    assert (model.neck.norms is not None) == (spec is SWIN)  # per-level LayerNorm on Swin stages only
    vis = [torch.randn(3, 70, 100), torch.randn(3, 45, 130)]  # non-square, not multiples of 32 or of the patch
    ir = [torch.randn(1, 70, 100), torch.randn(1, 45, 130)]
    images, ir_batch = model.batch(vis, ir)
    assert images.tensors.shape == (2, 3, 96, 160) and ir_batch.shape == (2, 1, 96, 160)
    assert images.image_sizes == [(70, 100), (45, 130)]
    for i, (v, t) in enumerate(zip(vis, ir, strict=True)):
        h, w = v.shape[-2:]
        assert torch.equal(images.tensors[i, :, :h, :w], v) and torch.equal(ir_batch[i, :, :h, :w], t)
        assert images.tensors[i, :, h:].abs().sum() == 0 and images.tensors[i, :, :, w:].abs().sum() == 0
        assert ir_batch[i, :, h:].abs().sum() == 0 and ir_batch[i, :, :, w:].abs().sum() == 0
    # targets are not moved by the padding (bottom / right only)
    boxes = torch.tensor([[5.0, 6.0, 50.0, 40.0]])
    assert torch.equal(model.prepare_targets([{"boxes": boxes, "labels": torch.tensor([1])}])[0]["boxes"], boxes)
    model.train()
    losses = model(vis, ir, [{"boxes": boxes, "labels": torch.tensor([1])},
                             {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.long)}])
    assert all(torch.isfinite(v) for v in losses.values())
    out = model.eval()(vis, ir)
    for det, (h, w) in zip(out, [(70, 100), (45, 130)], strict=True):
        b = det["boxes"]
        assert (b[:, 2] <= w).all() and (b[:, 3] <= h).all()  # nothing predicted in the padding


def test_input_and_config_errors():
    assert default_size_divisible(16) == 32 and default_size_divisible(14) == 42 and default_size_divisible(4) == 32
    model = tiny_model("fcos")
    with pytest.raises(InputShapeError, match="resize or register"):
        model.batch([torch.randn(3, 64, 64)], [torch.randn(1, 64, 80)])
    with pytest.raises(InputShapeError, match="one IR image per visible"):
        model.batch([torch.randn(3, 64, 64)], [])
    with pytest.raises(ConfigError, match="needs targets"):
        model.train()([torch.randn(3, 64, 64)], [torch.randn(1, 64, 64)])
    with pytest.raises(ConfigError, match="unknown detector"):
        tiny_model("yolo")
    with pytest.raises(ConfigError, match="neck levels"):
        tiny_model("fcos", levels=[2, 5])
