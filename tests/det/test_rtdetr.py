"""RTDETRDetector (HF transformers' RT-DETR on an IV backbone): losses, gradients, eval output, weights, errors."""

from __future__ import annotations

import copy
import os
import sys
from pathlib import Path

import pytest
import torch

from ivtune.errors import ConfigError, InputShapeError
from ivtune.tasks.det.rtdetr import MISSING_EXTRA, RTDETRDetector, levels_at_strides, to_hf_targets
from tests.det.detector_tester import check_eval_output, scene

try:
    from ivtune import build_backbone
except ImportError:  # the package is being reorganised; the factory's old home
    from ivtune.builder import build_backbone

VIT = ("vit_small_patch16_224", dict(depth=2, embed_dim=64, num_heads=2, img_size=(64, 96)))
SWIN = ("swin_tiny_patch4_window7_224", dict(embed_dim=32, depths=(1, 1, 2, 1), num_heads=(1, 2, 4, 8),
                                             img_size=(96, 128)))
TINY = dict(num_queries=20, d_model=32, decoder_layers=2, num_denoising=8,
            config_kwargs=dict(encoder_ffn_dim=64, decoder_ffn_dim=64))


@pytest.fixture(scope="module")
def hf():
    return pytest.importorskip("transformers")


def tiny(spec=VIT, num_classes: int = 3, **kwargs) -> RTDETRDetector:
    torch.manual_seed(0)
    name, timm_kwargs = spec
    backbone = build_backbone(name, adapter_dropout=0.0, **timm_kwargs)
    return RTDETRDetector(backbone, num_classes=num_classes, **{**TINY, **kwargs})


def loss_keys(decoder_layers: int, denoising: bool) -> set[str]:
    # last decoder layer; aux_0 .. aux_{L-2} the earlier layers, aux_{L-1} the encoder's top-k; dn_i every layer
    names = {"loss_vfl", "loss_bbox", "loss_giou"}
    keys = set(names) | {f"{n}_aux_{i}" for n in names for i in range(decoder_layers)}
    return keys | ({f"{n}_dn_{i}" for n in names for i in range(decoder_layers)} if denoising else set())


def reference_hf(det: RTDETRDetector, num_labels: int, cnn_channels: int, seed: int = 1):
    """A randomly initialised HF RT-DETR of the detector's configuration with its own small CNN backbone."""
    from transformers import RTDetrResNetConfig

    config = copy.deepcopy(det.hf.config)
    c = cnn_channels
    config.backbone_config = RTDetrResNetConfig(embedding_size=8, hidden_sizes=[8, c, c, c], depths=[1, 1, 1, 1],
                                                layer_type="basic", out_indices=[2, 3, 4])
    config.num_labels = num_labels
    torch.manual_seed(seed)
    return type(det.hf)(config)


@pytest.mark.parametrize("spec,version", [(VIT, "v2"), (SWIN, "v2"), (VIT, "v1")], ids=["vit", "swin", "vit-v1"])
def test_train_step_loss_terms_sum_to_hf_total_and_gradients_reach_only_trainable_parts(hf, spec, version):
    det = tiny(spec, version=version).train()
    assert det.detector_name == f"rtdetr_{version}"
    assert [det.backbone.strides[i] for i in det.levels] == [8, 16, 32]  # picked by stride
    assert (det.hf.model.backbone.norms is not None) == (spec is SWIN)  # per-level LayerNorm on Swin stages only
    samples = [scene(96, 128, [[16, 16, 56, 64], [70, 30, 110, 80]], [0, 2], 0),
               scene(80, 112, [[10, 40, 50, 76]], [1], 1)]  # non-square, not a multiple of 32
    vis, ir, targets = (list(x) for x in zip(*samples, strict=True))
    torch.manual_seed(5)  # the denoising queries are random: same seed, same draw
    parts = det(vis, ir, targets)
    assert set(parts) == loss_keys(2, denoising=True)
    loss = sum(parts.values())
    assert torch.isfinite(loss)
    pixel_values, pixel_mask, sizes = det.pack(vis, ir)
    assert pixel_values.shape == (2, 4, 96, 128) and sizes == [(96, 128), (80, 112)]
    labels = to_hf_targets(targets, sizes, (96, 128), 3)
    torch.manual_seed(5)
    assert torch.allclose(loss, det.hf(pixel_values=pixel_values, pixel_mask=pixel_mask, labels=labels).loss)
    loss.backward()
    frozen = [p for p in det.backbone.parameters() if not p.requires_grad]
    assert frozen and all(p.grad is None for p in frozen)  # IV-tuning: the timm weights stay frozen
    iv = [p for m in det.backbone.iv_modules() for p in m.parameters()]
    assert iv and all(p.grad is not None for p in iv)
    head = [(n, p) for n, p in det.named_parameters() if not n.startswith("backbone.")]
    assert all(p.requires_grad for _, p in head)
    assert [n for n, p in head if p.grad is None] == []


def test_engine_sees_one_backbone_and_a_disjoint_head(hf):
    det = tiny()
    # the engine's split: model.backbone vs every other child; a backbone nested in hf would be in both groups
    head = torch.nn.ModuleList([m for n, m in det.named_children() if n != "backbone"])
    assert not {id(p) for p in head.parameters()} & {id(p) for p in det.backbone.parameters()}
    assert not any(k.startswith("hf.model.backbone.iv_backbone") for k in det.state_dict())
    clone = copy.deepcopy(det)
    assert clone.hf.model.backbone.iv_backbone is clone.backbone and clone.backbone is not det.backbone


def test_backbone_activation_checkpointing_gives_the_same_loss_and_gradients(hf):
    # VIS and IR travel inside pixel_values, nothing is stashed: recomputation in backward sees the same inputs
    det = tiny().train()
    vis, ir, target = scene(64, 96, [[8, 8, 40, 48], [52, 16, 88, 56]], [0, 2])
    grads = []
    for enable in (False, True):
        det.backbone.set_grad_checkpointing(enable)
        det.zero_grad()
        torch.manual_seed(3)
        loss = sum(det([vis], [ir], [target]).values())
        loss.backward()
        grads.append((loss.detach(), [p.grad.clone() for p in det.parameters() if p.grad is not None]))
    assert torch.allclose(grads[0][0], grads[1][0])
    assert len(grads[0][1]) == len(grads[1][1])
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(grads[0][1], grads[1][1], strict=True))


def test_eval_boxes_inside_each_unpadded_image_scores_sorted_labels_zero_based(hf):
    out = check_eval_output(tiny(SWIN, score_thresh=0.0, detections_per_img=15).eval())
    for d in out:  # besides the shared contract: at most detections_per_img, non-empty boxes, sorted scores
        b, s = d["boxes"], d["scores"]
        assert len(b) <= 15 and len(s) == len(b) == len(d["labels"])
        assert (b[:, 2] > b[:, 0]).all() and (b[:, 3] > b[:, 1]).all()
        assert ((s >= 0) & (s <= 1)).all() and (s[:-1] >= s[1:]).all()
        assert d["labels"].dtype == torch.int64


def test_thirty_steps_on_one_image_lower_the_loss(hf):
    det = tiny().train()
    vis, ir, target = scene(64, 96, [[8, 8, 40, 48], [52, 16, 88, 56]], [0, 2])
    head = [p for n, p in det.named_parameters() if not n.startswith("backbone.") and p.requires_grad]
    back = [p for p in det.backbone.parameters() if p.requires_grad]
    opt = torch.optim.AdamW([{"params": head, "lr": 1e-3}, {"params": back, "lr": 1e-4}], weight_decay=1e-4)
    losses = []
    for _ in range(30):
        loss = sum(det([vis], [ir], [target]).values())
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(head + back, 1.0)
        opt.step()
        losses.append(loss.item())
    assert sum(losses[-5:]) < 0.8 * sum(losses[:5]), losses


def test_targets_conversion_drops_ignored_boxes_and_keeps_empty_images_as_negatives(hf):
    t = {"boxes": torch.tensor([[10.0, 20, 50, 40], [5, 5, 30, 30], [20, 20, 20, 35], [90, 50, 120, 70]]),
         "labels": torch.tensor([0, 1, 2, 1]), "ignore": torch.tensor([False, True, False, False])}
    empty = {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.long)}
    # image 0 is 64x100 inside a 64x128 padded batch: the last box is clipped to (90, 50, 100, 64)
    out = to_hf_targets([t, empty], [(64, 100), (64, 128)], (64, 128), num_classes=3)
    assert out[0]["class_labels"].tolist() == [0, 1]  # ignored and degenerate boxes removed
    expected = torch.tensor([[30 / 128, 30 / 64, 40 / 128, 20 / 64], [95 / 128, 57 / 64, 10 / 128, 14 / 64]])
    assert torch.allclose(out[0]["boxes"], expected)
    assert out[1]["boxes"].shape == (0, 4) and out[1]["class_labels"].shape == (0,)
    with pytest.raises(InputShapeError, match="0-based"):
        to_hf_targets([{"boxes": t["boxes"][:1], "labels": torch.tensor([3])}], [(64, 64)], (64, 64), 3)

    det = tiny().train()
    vis, ir, target = scene(64, 96, [[10, 10, 40, 40]], [0])
    only_ignored = {"boxes": target["boxes"], "labels": target["labels"], "ignore": torch.tensor([True])}
    mixed = det([vis, vis], [ir, ir], [target, only_ignored])
    assert set(mixed) == loss_keys(2, denoising=True) and all(torch.isfinite(v) for v in mixed.values())
    negatives = det([vis], [ir], [only_ignored])  # no box in the batch: no denoising group, still a loss
    assert set(negatives) == loss_keys(2, denoising=False)
    total = sum(negatives.values())
    assert torch.isfinite(total)
    total.backward()
    with pytest.raises(ConfigError, match="needs targets"):
        det([vis], [ir])


def test_detector_weights_of_the_same_configuration_all_load_and_give_the_same_outputs(hf, tmp_path):
    det = tiny().eval()
    ref = reference_hf(det, num_labels=3, cnn_channels=64).eval()  # its CNN has the IV backbone's channels
    ref.save_pretrained(tmp_path)  # the hub's file layout (older key names for some modules)
    torch.save(ref.state_dict(), tmp_path / "state.pth")  # the in-memory key names
    expected = {k for k in ref.state_dict() if not k.startswith("model.backbone.")}
    for path in (tmp_path / "model.safetensors", tmp_path / "state.pth"):
        report = det.load_detector_weights(path)
        assert set(report.loaded) == expected
        assert report.shape_mismatch == report.unexpected == report.missing == []
        assert report.skipped_backbone and all(k.startswith("model.backbone.") for k in report.skipped_backbone)
    own = det.hf.state_dict()
    assert all(torch.equal(own[k], v) for k, v in ref.state_dict().items() if k in expected)
    ref.model.backbone = det.hf.model.backbone  # same features into both
    vis, ir, _ = scene(64, 96, [[8, 8, 40, 48]], [0])
    pixel_values, pixel_mask, _ = det.pack([vis], [ir])
    with torch.no_grad():
        a = det.hf(pixel_values=pixel_values, pixel_mask=pixel_mask)
        b = ref(pixel_values=pixel_values, pixel_mask=pixel_mask)
    assert torch.equal(a.logits, b.logits) and torch.equal(a.pred_boxes, b.pred_boxes)


def test_detector_weights_with_other_classes_and_channels_report_the_heads_and_projections(hf, tmp_path):
    det = tiny()
    before = {k: v.clone() for k, v in det.hf.state_dict().items()}
    ref = reference_hf(det, num_labels=5, cnn_channels=8)  # COCO-like: other classes, other CNN widths
    ref.save_pretrained(tmp_path)
    report = det.load_detector_weights(tmp_path / "model.safetensors")
    heads = {k for k in before if k.startswith(("class_embed.", "model.decoder.class_embed.",
                                                 "model.enc_score_head.", "model.denoising_class_embed."))}
    projections = {k for k in before if k.startswith("model.encoder_input_proj.")}  # conv and its BN, whole
    assert set(report.shape_mismatch) == heads | projections
    assert report.shapes["model.enc_score_head.weight"] == ((5, 32), (3, 32))
    assert report.unexpected == report.missing == []
    assert set(report.loaded) == {k for k in ref.state_dict() if not k.startswith("model.backbone.")} - heads \
        - projections
    own, theirs = det.hf.state_dict(), ref.state_dict()
    assert all(torch.equal(own[k], before[k]) for k in heads | projections)  # kept their fresh init
    assert all(torch.equal(own[k], theirs[k]) for k in report.loaded)
    assert "model.enc_score_head.weight file (5, 32) vs detector (3, 32)" in str(report)


def test_missing_extra_is_a_config_error_and_ivtune_imports_without_it(monkeypatch):
    backbone = build_backbone(VIT[0], **VIT[1])
    for module in ("transformers", "scipy.optimize"):
        with monkeypatch.context() as m:
            m.setitem(sys.modules, module, None)  # `import` of it now raises ImportError
            with pytest.raises(ConfigError, match=r"needs the detr extra: pip install 'ivtune\[detr\]'"):
                RTDETRDetector(backbone, num_classes=3)
    assert MISSING_EXTRA == "model.head 'rtdetr' needs the detr extra: pip install 'ivtune[detr]'"
    # `import ivtune` works without the extra; no ivtune module imports transformers at import time (Lightning's
    # torchmetrics may import it by itself when it is installed, which is not ours to change). A forked child
    # forgets ivtune and transformers and imports ivtune again with transformers blocked; torch, timm and Lightning
    # stay imported, which a new interpreter (`python -c`) would spend ~5 s on.
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child; its exit status is the verdict
        ok = False
        try:
            for name in [m for m in sys.modules if m.split(".")[0] in ("ivtune", "transformers")]:
                del sys.modules[name]
            sys.modules["transformers"] = None
            import ivtune  # noqa: F401

            ok = not [m for m, mod in sys.modules.items() if m.split(".")[0] == "transformers" and mod is not None]
        finally:
            os._exit(0 if ok else 1)
    assert os.waitpid(pid, 0)[1] == 0, "`import ivtune` failed or imported transformers with the detr extra missing"
    import ast

    import ivtune

    for path in Path(ivtune.__file__).parent.rglob("*.py"):
        for node in ast.parse(path.read_text()).body:  # module level only: imports inside functions are lazy
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            assert not any(n.split(".")[0] in ("transformers", "scipy") for n in names), path


def test_invalid_settings_raise_config_errors(hf):
    assert levels_at_strides([4, 8, 16, 32]) == [1, 2, 3]
    with pytest.raises(ConfigError, match="strides"):
        levels_at_strides([16, 32])
    backbone = build_backbone(VIT[0], **VIT[1])
    with pytest.raises(ConfigError, match="may not set"):
        RTDETRDetector(backbone, num_classes=3, config_kwargs={"num_queries": 10})
    with pytest.raises(ConfigError, match="unknown"):
        RTDETRDetector(backbone, num_classes=3, config_kwargs={"decoder_ffn": 64})
    with pytest.raises(ConfigError, match="size_divisible"):
        RTDETRDetector(backbone, num_classes=3, size_divisible=48)
    with pytest.raises(ConfigError, match="version"):
        RTDETRDetector(backbone, num_classes=3, version="v3")
    det = RTDETRDetector(backbone, num_classes=3, **{**TINY, "num_queries": 200})
    with pytest.raises(InputShapeError, match="fewer than num_queries"):
        det.pack([torch.zeros(3, 32, 32)], [torch.zeros(1, 32, 32)])
