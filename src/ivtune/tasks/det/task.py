"""Object detection as a Lightning task: IV backbone + FPN + torchvision detector, COCO mAP per condition.

The data layer (:mod:`ivtune.data.det`) and the COCO metrics (:mod:`ivtune.metrics.det`) are imported when first
used, through :func:`_data` and :func:`_metrics`. ``data.options`` holds both dataset options (passed to
``build_det_dataset``) and the resize options of the detection transforms, which are taken out by name
(:data:`TRANSFORM_OPTIONS`): ``train_sizes`` (shorter side, one drawn per sample), ``test_size``, ``max_size`` (cap
of the longer side) and ``crop``.

Evaluation: every rank collects its detections (rescaled to the original image size through ``meta["scale"]``); under
DDP they are gathered with ``torch.distributed.all_gather_object``, rank 0 runs ``coco_evaluate`` (overall and per
condition) and broadcasts the results, so every rank logs the same numbers.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..backbones.factory import build_backbone
from ..config import Config
from ..engine.datamodule import PairedDataModule, test_split_of
from ..engine.module import IVTaskModule
from ..errors import DataError
from ..heads.det import DetectionModel

# data.options keys that configure the transforms; every other key goes to the dataset
TRANSFORM_OPTIONS = ("train_sizes", "test_size", "max_size", "crop")
DEFAULT_TRAIN_SIZES = list(range(480, 801, 32))  # torchvision / detectron2 multi-scale training
DEFAULT_TEST_SIZE = 800
DEFAULT_MAX_SIZE = 1333
DRAW_SCORE_THRESH = 0.3  # boxes drawn by predict; detections.json keeps every box above the model's threshold


def _data():
    from ..data import det

    return det


def _metrics():
    from ..metrics import det

    return det


# ---------------------------------------------------------------------------------------------------- data
def split_options(options: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """``data.options`` -> (dataset options, transform options)."""
    ds = {k: v for k, v in options.items() if k not in TRANSFORM_OPTIONS}
    tf = {k: v for k, v in options.items() if k in TRANSFORM_OPTIONS}
    return ds, tf


def build_transforms(cfg: Config, train: bool):
    d = cfg.data
    _, tf = split_options(d.options)
    max_size = int(tf.get("max_size", DEFAULT_MAX_SIZE))
    if train:
        sizes = tf.get("train_sizes", DEFAULT_TRAIN_SIZES)
        sizes = [int(s) for s in (sizes if isinstance(sizes, (list, tuple)) else [sizes])]
    else:
        sizes = [int(tf.get("test_size", DEFAULT_TEST_SIZE))]
    return _data().build_det_transforms(
        train=train, sizes=sizes, max_size=max_size, hflip=d.hflip if train else 0.0,
        photometric=d.photometric and train, ir_norm=d.ir_norm, ir_mean=d.ir_mean, ir_std=d.ir_std,
        ir_channels=d.ir_channels, crop=tf.get("crop") if train else None,
    )


def build_dataset(cfg: Config, split: str, train: bool, strict: bool = True):
    ds_options, _ = split_options(cfg.data.options)
    return _data().build_det_dataset(cfg.data.dataset, cfg.data.root, split, build_transforms(cfg, train),
                                     strict=strict, **ds_options)


def eval_split(cfg: Config, stage: str) -> str:
    return cfg.data.val_split if stage == "val" else test_split_of(cfg)


# ---------------------------------------------------------------------------------------------------- model
def build_det_model(cfg: Config, num_classes: int) -> DetectionModel:
    """``model.head`` is the detector (``fcos``, ``retinanet``, ``fasterrcnn``); ``model.head_kwargs`` go to
    :class:`DetectionModel` (``fpn_channels``, ``levels``, ``score_thresh``, ``detector_kwargs`` ...)."""
    m = cfg.model
    backbone = build_backbone(
        m.backbone, method=m.method, pretrained=m.pretrained, weights=m.weights, out_indices=m.out_indices,
        adapter_init=m.adapter_init, adapter_dropout=m.adapter_dropout, **m.timm_kwargs,
    )
    if m.grad_checkpointing:
        backbone.set_grad_checkpointing(True)
    return DetectionModel(backbone, m.head, num_classes=num_classes, **dict(m.head_kwargs))


def rescale_boxes(boxes: torch.Tensor, meta: dict[str, Any]) -> torch.Tensor:
    """Boxes in the transformed image -> the original image (``meta["scale"] = (sy, sx)``, new / original)."""
    sy, sx = meta.get("scale", (1.0, 1.0))
    out = boxes / boxes.new_tensor([sx, sy, sx, sy])
    if meta.get("orig_size") is not None:
        h, w = meta["orig_size"]
        out[:, 0::2] = out[:, 0::2].clamp(0, w)
        out[:, 1::2] = out[:, 1::2].clamp(0, h)
    return out


def to_coco_detections(det: dict[str, torch.Tensor], image_id: int) -> list[dict[str, Any]]:
    """One image's detections (original pixels, 0-based labels) as COCO results (``category_id`` = label + 1)."""
    boxes = det["boxes"].detach().cpu().double()
    xywh = torch.cat([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], 1).tolist()
    return [{"image_id": int(image_id), "category_id": int(lab) + 1, "bbox": [round(v, 2) for v in b],
             "score": round(float(s), 5)}
            for b, s, lab in zip(xywh, det["scores"].tolist(), det["labels"].tolist(), strict=True)]


def subset_coco(gt: dict[str, Any], image_ids: set[int]) -> dict[str, Any]:
    return {**gt, "images": [im for im in gt["images"] if im["id"] in image_ids],
            "annotations": [a for a in gt["annotations"] if a["image_id"] in image_ids]}


class DetTask(IVTaskModule):
    """Trains a :class:`DetectionModel`; validation / test report COCO mAP overall and per condition."""

    def __init__(self, cfg: Config, classes: list[str]) -> None:
        super().__init__(cfg)
        self.classes = list(classes)
        self.model = build_det_model(cfg, len(self.classes))
        self._detections: list[dict[str, Any]] = []
        self._conditions: dict[int, str | None] = {}

    # ---------------------------------------------------------------- training
    def forward(self, vis, ir, targets=None):
        return self.model(vis, ir, targets)

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        targets = [{"boxes": b, "labels": lab, "ignore": ig}
                   for b, lab, ig in zip(batch["boxes"], batch["labels"], batch["ignore"], strict=True)]
        losses = self.model(batch["vis"], batch["ir"], targets)
        loss = sum(losses.values())
        if not torch.isfinite(loss):
            names = [m["name"] for m in batch["meta"]]
            raise FloatingPointError(f"non-finite loss {loss.item()} ({ {k: v.item() for k, v in losses.items()} }) "
                                     f"at step {self.global_step} on {names}; lower optim.lr, set "
                                     "optim.grad_clip_norm or use precision 32")
        n = len(batch["vis"])
        self.log("train/loss", loss, prog_bar=True, on_step=True, on_epoch=False, batch_size=n)
        for k, v in losses.items():
            self.log(f"train/{k}", v, on_step=True, on_epoch=False, batch_size=n)
        self.log("train/lr", self.optimizers().param_groups[0]["lr"], on_step=True, on_epoch=False)
        return loss

    # ---------------------------------------------------------------- evaluation
    def _reset(self) -> None:
        self._detections, self._conditions = [], {}

    def on_validation_epoch_start(self) -> None:
        self._reset()

    def on_test_epoch_start(self) -> None:
        self._reset()

    def _eval_step(self, batch: dict[str, Any]) -> None:
        dets = self.model(batch["vis"], batch["ir"])  # eval mode: Lightning switched it
        for det, meta in zip(dets, batch["meta"], strict=True):
            if not meta.get("counted", True):
                continue  # padding that evens out the ranks
            image_id = int(meta["image_id"])
            self._conditions[image_id] = meta.get("condition")
            self._detections += to_coco_detections({**det, "boxes": rescale_boxes(det["boxes"], meta)}, image_id)

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._eval_step(batch)

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._eval_step(batch)

    def _gather(self) -> tuple[list[dict], dict[int, str | None]]:
        dist = torch.distributed
        if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
            return self._detections, self._conditions
        parts: list[Any] = [None] * dist.get_world_size()
        dist.all_gather_object(parts, (self._detections, self._conditions))
        dets, conds = [], {}
        for d, c in parts:
            dets += d
            conds |= c
        return dets, conds

    def _finish_eval(self, stage: str) -> None:
        dets, conds = self._gather()
        results: dict[str, dict] = {}
        if self.global_rank == 0:
            gt = self.trainer.datamodule.dataset(eval_split(self.cfg, stage)).to_coco()
            seen = set(conds)
            groups = {"all": seen} | {c: {i for i, cc in conds.items() if cc == c}
                                      for c in sorted({c for c in conds.values() if c})}
            for name, ids in groups.items():
                if ids:
                    results[name] = _metrics().coco_evaluate(subset_coco(gt, ids),
                                                             [d for d in dets if d["image_id"] in ids])
        dist = torch.distributed
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            box = [results]
            dist.broadcast_object_list(box, src=0)
            results = box[0]
        for name, res in results.items():
            suffix = "" if name == "all" else f"_{name}"
            for key in ("mAP", "AP50"):
                if res.get(key) is not None:
                    self.log(f"{stage}/{key}{suffix}", float(res[key]), sync_dist=False, rank_zero_only=False)
        self.eval_results = results

    def on_validation_epoch_end(self) -> None:
        self._finish_eval("val")

    def on_test_epoch_end(self) -> None:
        self._finish_eval("test")

    def checkpoint_meta(self) -> dict[str, Any]:
        return {"classes": self.classes, "detector": self.model.detector_name}


# ---------------------------------------------------------------------------------------------------- interface
def dataset_info(dataset) -> dict[str, Any]:
    return {"classes": list(dataset.classes)}


def build_module(cfg: Config, info: dict[str, Any]) -> DetTask:
    return DetTask(cfg, info["classes"])


def build_datamodule(cfg: Config) -> PairedDataModule:
    return PairedDataModule(cfg, build_dataset, lambda batch: _data().collate_det(batch))


def write_eval_report(results: dict[str, dict], info: dict[str, Any], out_dir: Path) -> None:
    m = _metrics()
    m.write_det_report(results, info["classes"], out_dir)
    for cond, res in results.items():  # pr_curves.png (all images), pr_curves_day.png, ...
        name = "pr_curves.png" if cond == "all" else f"pr_curves_{cond}.png"
        m.plot_pr_curves(res, info["classes"], Path(out_dir) / name)


def _fmt(v: Any) -> str:
    return "  n/a" if v is None else f"{float(v):5.2f}"


def format_results(results: dict[str, dict]) -> str:
    return "\n".join(f"{cond:>6}: mAP {_fmt(r.get('mAP'))}  AP50 {_fmt(r.get('AP50'))}  AP75 {_fmt(r.get('AP75'))}"
                     for cond, r in results.items())


def draw_detections(rgb: np.ndarray, det: dict[str, torch.Tensor], classes: list[str],
                    score_thresh: float = DRAW_SCORE_THRESH) -> np.ndarray:
    """Boxes with class name and score drawn on an (H, W, 3) uint8 image."""
    from PIL import Image, ImageDraw

    from ..data.pairs import default_palette

    palette = default_palette(len(classes))
    image = Image.fromarray(np.ascontiguousarray(rgb))
    draw = ImageDraw.Draw(image)
    for box, score, label in zip(det["boxes"].tolist(), det["scores"].tolist(), det["labels"].tolist(), strict=True):
        if score < score_thresh:
            continue
        color = tuple(int(c) for c in palette[label % len(palette)])
        draw.rectangle(box, outline=color, width=2)
        draw.text((box[0] + 2, box[1] + 1), f"{classes[label]} {score:.2f}", fill=color)
    return np.asarray(image)


def predict(module: DetTask, cfg: Config, pairs: list[tuple[str, Path, Path]], out_dir: Path,
            device: str = "cpu") -> list[Path]:
    """Writes ``NAME_det.png`` (boxes on the visible | infrared image, side by side) per pair and one COCO-style
    ``detections.json`` (``image_id`` = pair index, ``file_name``, ``category_id`` = label + 1, xywh in original
    pixels); returns the PNG paths."""
    from PIL import Image

    from ..data.io import read_gray, read_rgb

    model = module.model.to(device).eval()
    transform = build_transforms(cfg, train=False)
    images, results, written = [], [], []
    for image_id, (name, vis_file, ir_file) in enumerate(pairs):
        rgb, thermal = read_rgb(vis_file), read_gray(ir_file)
        if rgb.shape[:2] != thermal.shape[:2]:
            raise DataError(f"{vis_file} is {rgb.shape[1]}x{rgb.shape[0]} but {ir_file} is {thermal.shape[1]}x"
                            f"{thermal.shape[0]}; register / resize the IR image to the visible one.")
        h, w = rgb.shape[:2]
        raw = {"vis": rgb, "ir": thermal, "boxes": np.zeros((0, 4), np.float32), "labels": np.zeros(0, np.int64),
               "ignore": np.zeros(0, bool),
               "meta": {"name": name, "vis_path": str(vis_file), "ir_path": str(ir_file), "ann_path": None,
                        "condition": None, "orig_size": (h, w), "image_id": image_id}}
        sample = transform(raw, rng=0)
        det = model.predict(sample["vis"].to(device), sample["ir"].to(device))[0]
        det = {k: v.cpu() for k, v in det.items()}
        det["boxes"] = rescale_boxes(det["boxes"], {**sample["meta"], "orig_size": (h, w)})
        ir_rgb = np.repeat(thermal[..., None], 3, axis=2)
        panel = np.concatenate([draw_detections(rgb, det, module.classes),
                                draw_detections(ir_rgb, det, module.classes)], axis=1)
        path = out_dir / f"{name}_det.png"
        Image.fromarray(panel).save(path)
        written.append(path)
        images.append({"id": image_id, "file_name": str(vis_file), "ir_file_name": str(ir_file), "height": h,
                       "width": w})
        results += to_coco_detections(det, image_id)
    payload = {"images": images, "categories": [{"id": i + 1, "name": c} for i, c in enumerate(module.classes)],
               "detections": results}
    (out_dir / "detections.json").write_text(json.dumps(payload, indent=1) + "\n")
    return written
