"""``model.head: rtdetr`` through the engine: train, checkpoint, resume, evaluate, predict, detector weights, errors."""

from __future__ import annotations

import copy
import csv
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ivtune.checkpoint import trainable_state_dict
from ivtune.errors import CheckpointMismatchError, ConfigError, InputShapeError
from ivtune.runner import load_config
from ivtune.runner.run import evaluate, train
from ivtune.tasks.det.model import HEADS, build_detector
from ivtune.tasks.det.rtdetr import MISSING_EXTRA, RTDETRDetector
from ivtune.tasks.det.task import DetTask, build_det_model
from tests.det.detector_tester import predict_real_msrs
from tests.helpers import SHARED, requires_shared, retarget
from tests.task_tester import (
    assert_loads_trained,
    assert_refuses_missing_tensor,
    assert_same_weights,
    cli_on_two_ranks,
    crash_run,
    run_weights,
)

pytest.importorskip("transformers")  # the detr extra; `make test` installs it

REPO = Path(__file__).resolve().parents[2]
TINY = REPO / "configs" / "det" / "synthetic_tiny_rtdetr.yaml"
FCOS = REPO / "configs" / "det" / "synthetic_tiny_fcos.yaml"
CLASSES = ["person", "car", "bike"]
# one fixed batch: 4 scenes, no augmentation, batch 4: the loss curve shows learning, not a new draw per step
FIXED = ["data.num_samples=4", "data.batch_size=4", "data.hflip=0", "data.photometric=false", "data.train_sizes=[128]"]


def _run(out: Path, *extra: str) -> list[str]:
    return [f"train.output_dir={out}", "train.run_name=run", "train.log_every=1", "train.progress_bar=false", *extra]


def _losses(run_dir: Path) -> list[float]:
    rows = csv.DictReader((run_dir / "logs" / "version_0" / "metrics.csv").open())
    return [float(r["train/loss"]) for r in rows if r.get("train/loss")]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    # score_thresh 0: every query's best class is kept, so a briefly trained model still writes boxes
    return train(TINY, _run(tmp_path_factory.mktemp("rtdetr"), "train.max_steps=8", "train.val_every=8",
                            "train.checkpoint_every=8", "model.head_kwargs.score_thresh=0.0", *FIXED))


def test_training_lowers_the_loss_and_checkpoints_hold_only_trainable_tensors(run_dir):
    losses = _losses(run_dir)
    assert len(losses) == 8 and all(np.isfinite(losses))
    assert sum(losses[-3:]) < 0.85 * sum(losses[:3]), losses
    ckpt = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False)
    assert ckpt["global_step"] == 8 and ckpt["ivtune"] == {"classes": CLASSES, "detector": "rtdetr_v2"}
    cfg = load_config(run_dir / "config.yaml")
    fresh = DetTask(cfg, CLASSES)
    assert isinstance(fresh.model, RTDETRDetector)
    expected = set(trainable_state_dict(fresh))
    assert set(ckpt["state_dict"]) == expected == set(run_weights(run_dir))
    assert not any(".block." in k for k in expected)  # no frozen timm weight
    assert any(k.startswith("model.hf.model.decoder.") for k in expected)
    assert any(k.endswith("running_mean") for k in expected)  # BN statistics of the hybrid encoder travel too
    # load: strict key check, and the trained tensors differ from a fresh model's
    assert_loads_trained(cfg, run_dir, fresh)
    assert_refuses_missing_tensor(fresh, ckpt)


def test_evaluate_writes_coco_metrics_per_condition(run_dir):
    results = evaluate(run_dir)
    assert {"all", "day", "night"} <= set(results)
    assert results["all"]["num_images"] == 4
    for res in results.values():
        assert 0.0 <= res["mAP"] <= 100.0 and 0.0 <= res["AP50"] <= 100.0
    out = run_dir / "eval" / "test"
    for name in ("metrics.json", "metrics.md", "pr_curves.png", "pr_curves_night.png"):
        assert (out / name).is_file(), name
    saved = json.loads((out / "metrics.json").read_text())["results"]
    assert saved["all"]["AP50"] == pytest.approx(results["all"]["AP50"])


MSRS = SHARED / "data" / "real" / "msrs_det"


@pytest.mark.shared
@requires_shared(MSRS)
def test_predict_writes_drawings_and_json_on_real_msrs_pairs(run_dir, tmp_path):
    payload = predict_real_msrs(run_dir, MSRS, tmp_path)
    assert [c["name"] for c in payload["categories"]] == CLASSES
    dets = payload["detections"]
    assert len({d["image_id"] for d in dets}) == 20  # score_thresh 0: boxes on every image
    for d in dets:  # rescaled from the 128-px test size to the original pixels, inside the image
        x, y, w, h = d["bbox"]
        assert 1 <= d["category_id"] <= 3 and 0 <= x and 0 <= y and x + w <= 640.01 and y + h <= 480.01
        assert 0.0 <= d["score"] <= 1.0
    assert max(d["bbox"][2] for d in dets) > 128  # in original pixels, not the network's input


@pytest.mark.slow
def test_resume_after_a_crash_is_bit_identical_to_an_uninterrupted_run(tmp_path):
    # random parts of a step: augmentation (seeded per sample), the denoising queries' noise and dropout (torch's
    # global RNG, reseeded at every checkpoint step): a resumed run must draw the same
    common = ["train.max_steps=5", "train.checkpoint_every=2", "train.val_every=100", "data.num_samples=4",
              "data.batch_size=2"]
    straight = train(TINY, _run(tmp_path / "a", *common))
    crashed = crash_run(TINY, _run(tmp_path / "b", *common), tmp_path / "b" / "run", crash_at=3, last_checkpoint=2)
    assert_same_weights(straight, train(crashed, resume=True))


# ------------------------------------------------------------------------------------------- detector weights
def _reference_file(det: RTDETRDetector, num_labels: int, path: Path) -> dict[str, torch.Tensor]:
    """A randomly initialised HF RT-DETR of ``det``'s configuration (own small CNN, ``num_labels`` classes),
    saved as the hub's ``model.safetensors``; returns its state dict."""
    from transformers import RTDetrResNetConfig

    config = copy.deepcopy(det.hf.config)
    config.backbone_config = RTDetrResNetConfig(embedding_size=8, hidden_sizes=[8, 16, 16, 16], depths=[1, 1, 1, 1],
                                                layer_type="basic", out_indices=[2, 3, 4])
    config.num_labels = num_labels
    torch.manual_seed(1)
    ref = type(det.hf)(config)
    ref.save_pretrained(path)
    return ref.state_dict()


def test_detector_weights_from_the_config_load_and_report_every_skipped_key_by_name(tmp_path, caplog):
    cfg = load_config(TINY)
    fresh = build_det_model(cfg, 3)
    ref = _reference_file(fresh, 3, tmp_path / "same")
    with caplog.at_level(logging.INFO, logger="ivtune.tasks.det.rtdetr"):
        det = build_det_model(load_config(TINY, [f"model.detector_weights={tmp_path / 'same' / 'model.safetensors'}"]),
                              3)
    own = det.hf.state_dict()
    decoder = [k for k in ref if k.startswith("model.decoder.")]
    assert decoder and all(torch.equal(own[k], ref[k]) for k in decoder)
    # the file's CNN (skipped) and the input projections (its CNN has other widths) are named; nothing else
    text = caplog.text
    assert "skipped backbone: model.backbone." in text
    projections = {k for k in own if k.startswith("model.encoder_input_proj.")}
    assert all(f"shape mismatch (kept fresh init): {k}" in text for k in projections)
    assert "unexpected" not in text and "missing from the file" not in text

    # a COCO-like file: other class count; the class heads keep their fresh init and are named with both shapes
    other = _reference_file(fresh, 5, tmp_path / "other")
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="ivtune.tasks.det.rtdetr"):
        det = build_det_model(load_config(TINY, [f"model.detector_weights={tmp_path / 'other' / 'model.safetensors'}"]),
                              3)
    text = caplog.text
    heads = [k for k in det.hf.state_dict() if k.startswith(("model.enc_score_head.", "model.denoising_class_embed.",
                                                             "model.decoder.class_embed."))]
    assert heads and all(f"shape mismatch (kept fresh init): {k}" in text for k in heads)
    assert "model.enc_score_head.weight file (5, 64) vs detector (3, 64)" in text
    own = det.hf.state_dict()
    assert all(torch.equal(own[k], other[k]) for k in decoder if not k.startswith("model.decoder.class_embed."))


def test_detector_weights_errors_name_the_key(tmp_path):
    with pytest.raises(ConfigError, match=r"model\.detector_weights.*needs model\.head: rtdetr, got 'fcos'"):
        build_det_model(load_config(FCOS, [f"model.detector_weights={tmp_path / 'x.pth'}"]), 3)
    with pytest.raises(CheckpointMismatchError, match=r"x\.pth \(model\.detector_weights\) does not exist"):
        build_det_model(load_config(TINY, [f"model.detector_weights={tmp_path / 'x.pth'}"]), 3)
    torch.save({"conv.weight": torch.zeros(2, 2)}, tmp_path / "other.pth")  # not an RT-DETR
    with pytest.raises(CheckpointMismatchError, match="no tensor of this RT-DETR"):
        build_det_model(load_config(TINY, [f"model.detector_weights={tmp_path / 'other.pth'}"]), 3)


# ------------------------------------------------------------------------------------------- errors and bad input
def test_unknown_head_and_head_kwargs_list_the_options():
    backbone = torch.nn.Module()
    with pytest.raises(ConfigError, match="unknown detector head 'detr'.*fcos, retinanet, fasterrcnn, rtdetr"):
        build_detector(backbone, "detr", 3)
    assert HEADS == ("fcos", "retinanet", "fasterrcnn", "rtdetr")
    with pytest.raises(ConfigError, match=r"\['fpn_channels'\] are not options of model.head 'rtdetr'.*num_queries"):
        build_det_model(load_config(TINY, ["model.head_kwargs.fpn_channels=64"]), 3)


def test_missing_extra_is_one_error_line_naming_the_extra_on_the_cli(monkeypatch, tmp_path):
    from click.testing import CliRunner

    from ivtune.cli import main

    monkeypatch.setitem(sys.modules, "transformers", None)  # `import transformers` now fails, as without the extra
    with pytest.raises(ConfigError, match=r"pip install 'ivtune\[detr\]'"):
        build_det_model(load_config(TINY), 3)
    res = CliRunner().invoke(main, ["train", str(TINY), "--set", f"train.output_dir={tmp_path}"])
    assert res.exit_code == 2 and MISSING_EXTRA in res.output and "Traceback" not in res.output
    assert not list(tmp_path.rglob("*.ckpt"))


def _tiny_model(head: str) -> torch.nn.Module:
    cfg = load_config(TINY if head == "rtdetr" else FCOS)
    torch.manual_seed(0)
    return build_det_model(cfg, 3).train()


@pytest.mark.parametrize("head", ["fcos", "rtdetr"])
def test_bad_targets_behave_as_for_fcos(head):
    model = _tiny_model(head)
    g = torch.Generator().manual_seed(0)
    vis, ir = [torch.randn(3, 96, 128, generator=g)], [torch.randn(3, 96, 128, generator=g)]
    def target(boxes: list[list[float]], labels: list[int], ignore: list[bool]) -> dict[str, torch.Tensor]:
        return {"boxes": torch.tensor(boxes).reshape(-1, 4), "labels": torch.tensor(labels, dtype=torch.long),
                "ignore": torch.tensor(ignore, dtype=torch.bool)}

    empty, ignored = target([], [], []), target([[10.0, 10, 60, 70]], [1], [True])

    def loss(target):
        torch.manual_seed(3)  # RT-DETR's denoising draw
        return sum(model(vis, ir, [target]).values())

    negative = loss(empty)  # an image without boxes trains as a negative
    assert torch.isfinite(negative)
    negative.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())
    # an ignore region is never a positive: the loss is the negative image's
    torch.testing.assert_close(loss(ignored), negative, rtol=0, atol=0)
    # a box outside the image: finite loss (RT-DETR clips it to the image and drops it, having no area left)
    assert torch.isfinite(loss(target([[130.0, 10, 160, 40]], [0], [False])))
    with pytest.raises(InputShapeError, match="0-based class indices < 3"):  # an unknown class
        loss(target([[10.0, 10, 60, 70]], [3], [False]))


@pytest.mark.parametrize("name", ["eva02_tiny_patch14_224", "vit_small_patch14_dinov2"])
def test_patch14_backbones_pad_to_42_and_train(name):
    # patch 14: padded to a multiple of 42 (not lcm(14, 32) = 224); the pyramid's maps, a row or column off the
    # exact 2x, are evened out by the adapter. 100x150 -> 126x168: maps 16x21 / 8x11 / 4x6 -> 16x24 / 8x12 / 4x6
    from ivtune.builder import build_backbone

    torch.manual_seed(0)
    backbone = build_backbone(name, depth=2, embed_dim=64, num_heads=2, dynamic_img_size=True, adapter_dropout=0.0)
    det = RTDETRDetector(backbone, num_classes=3, num_queries=20, d_model=32, decoder_layers=2, num_denoising=8,
                         config_kwargs=dict(encoder_ffn_dim=64, decoder_ffn_dim=64)).train()
    assert det.size_divisible == 42
    vis, ir = [torch.randn(3, 100, 150)], [torch.randn(3, 100, 150)]
    pixel_values, mask, _ = det.pack(vis, ir)
    assert pixel_values.shape[-2:] == (126, 168)
    maps = det.hf.model.backbone(pixel_values, mask)
    assert [tuple(m.shape[-2:]) for m, _ in maps] == [(16, 24), (8, 12), (4, 6)]
    target = {"boxes": torch.tensor([[10.0, 20, 60, 90]]), "labels": torch.tensor([2])}
    loss = sum(det(vis, ir, [target]).values())
    loss.backward()
    assert torch.isfinite(loss) and all(p.grad is not None for m in backbone.iv_modules() for p in m.parameters())
    (out,) = det.eval()(vis, ir)
    assert (out["boxes"][:, 2] <= 150).all() and (out["boxes"][:, 3] <= 100).all()


# ------------------------------------------------------------------------------------------- DDP
def _folders_with_negatives(root: Path) -> Path:
    """4 pairs (96x128): one with a box, three without any (negatives)."""
    rng = np.random.default_rng(0)
    root.mkdir(parents=True)
    (root / "classes.txt").write_text("0 person\n1 car\n2 bike\n")
    for split in ("train", "test"):
        for k in range(4):
            for sub, shape in (("vis", (96, 128, 3)), ("ir", (96, 128))):
                (root / split / sub).mkdir(parents=True, exist_ok=True)
                Image.fromarray(rng.integers(0, 255, shape, dtype=np.uint8)).save(root / split / sub / f"{k}.png")
            (root / split / "boxes").mkdir(exist_ok=True)
            (root / split / "boxes" / f"{k}.txt").write_text("1 20 20 70 80\n" if k == 0 else "")
    return root


@pytest.mark.slow
def test_ddp_training_on_two_ranks_with_batches_of_negatives(tmp_path):
    # gloo on the CPU, batch 1 per rank, 2 steps over 1 positive + 3 negative images: at step 1 a rank trains a
    # batch without a box, whose step must still reduce every parameter (DDP's default strategy checks it when
    # step 2 starts)
    root = _folders_with_negatives(tmp_path / "data")
    config = retarget(TINY, "folders", tmp_path)
    cli_on_two_ranks("train", config, [f"data.root={root}", "data.val_split=test", "data.batch_size=1",
                                        "data.eval_batch_size=1", "train.max_steps=2", "train.val_every=2",
                                        "train.checkpoint_every=2", f"train.output_dir={tmp_path / 'runs'}",
                                        "train.run_name=ddp", "train.progress_bar=false"], tmp_path)
    ckpt = torch.load(tmp_path / "runs" / "ddp" / "checkpoints" / "last.ckpt", weights_only=False)
    assert ckpt["global_step"] == 2


# ------------------------------------------------------------------------------------------- configs
@pytest.mark.parametrize("name", sorted(p.name for p in (REPO / "configs" / "det").glob("*_rtdetr.yaml")))
def test_rtdetr_configs_load_with_the_authors_dino_optimiser(name):
    cfg = load_config(REPO / "configs" / "det" / name)
    assert cfg.model.head == "rtdetr" and cfg.model.detector_weights is None
    if "swin_l" in name:  # AdamW 1e-4 (detector), backbone x0.1, wd 1e-4, grad-norm clip 0.1, 640-px multi-scale
        o, d, t = cfg.optim, cfg.data, cfg.train
        assert (o.name, o.weight_decay, o.grad_clip_norm, o.lr, o.lr * o.head_lr_mult) == ("adamw", 1e-4, 0.1, 1e-5,
                                                                                          pytest.approx(1e-4))
        assert min(d.train_sizes) == 480 and d.max_size == 800 and d.batch_size == 2
        # 36 epochs, x0.1 at 27 and 33; validation every epoch
        assert t.max_steps == 36 * t.val_every and o.step_milestones == [27 * t.val_every, 33 * t.val_every]
        assert cfg.model.head_kwargs["num_denoising"] == 100 and cfg.model.head_kwargs["detections_per_img"] == 300


def test_swin_l_rtdetr_builds_on_the_meta_device():
    cfg = load_config(REPO / "configs" / "det" / "m3fd_swin_l_rtdetr.yaml", ["model.pretrained=false"])
    with torch.device("meta"):
        det = build_det_model(cfg, 6)
    assert isinstance(det, RTDETRDetector) and det.detector_name == "rtdetr_v2"
    assert [det.backbone.strides[i] for i in det.levels] == [8, 16, 32]
    assert det.hf.model.backbone.intermediate_channel_sizes == [384, 768, 1536]  # Swin-L stages 2-4
    assert det.hf.model.backbone.norms is not None  # per-level LayerNorm on the Swin stages
    assert det.hf.config.num_queries == 300 and det.hf.config.decoder_layers == 6


@pytest.mark.slow
def test_benchmark_runs_with_the_rtdetr_head(tmp_path):
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "detection.py"), "--head", "rtdetr", "--smoke",
                           "--device", "cpu", "--variants", "iv-tuning", "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=300, cwd=REPO,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    (result,) = tmp_path.glob("detection_*_smoke.json")
    report = json.loads(result.read_text())
    assert report["args"]["config"].endswith("synthetic_tiny_rtdetr.yaml")
    row = report["methods"]["iv-tuning"]
    assert row["steps"] == 2 and {"loss_vfl", "loss_bbox", "loss_giou", "loss_vfl_dn_0"} <= set(row["loss_last_parts"])
    assert len(row["loss_curve"]["loss"]) == 2 and "night" in row["results"]
    assert "(rtdetr)" in result.with_suffix(".md").read_text()
    assert result.with_name(result.stem + "_loss.png").is_file()
