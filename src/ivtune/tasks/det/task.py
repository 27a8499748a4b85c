"""Object detection as a registered task: IV backbone + FPN + torchvision detector, COCO mAP per condition.

The transforms read ``data.train_sizes`` (shorter side, one drawn per sample), ``data.test_size``, ``data.max_size``
(cap of the longer side) and ``data.crop``; every other dataset option is a typed key of the dataset's own.

Evaluation: every rank collects its detections (rescaled to the original image size through ``meta["scale"]``);
the engine's gather brings them to rank 0, which runs ``coco_evaluate`` (overall and per condition) against the
split's COCO ground truth; every rank logs the same numbers.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ...config import Config
from ...data.pairs import default_palette
from ...engine.backbone import backbone_from_config
from ...engine.datamodule import test_split_of
from ...engine.module import IVTaskModule
from ...engine.predict import predict_loop
from ...engine.task import Task
from .config import DetDataConfig
from .datasets import DET_DATASETS, build_det_dataset
from .metrics import coco_evaluate, plot_pr_curves, write_det_report
from .model import DetectionModel
from .transforms import build_det_transforms, collate_det

DRAW_SCORE_THRESH = 0.3  # boxes drawn by predict; detections.json keeps every box above the model's threshold


# ---------------------------------------------------------------------------------------------------- data
def build_transforms(cfg: Config, train: bool):
    d = cfg.data
    return build_det_transforms(
        train=train, sizes=list(d.train_sizes) if train else [d.test_size], max_size=d.max_size,
        hflip=d.hflip if train else 0.0, photometric=d.photometric and train, ir_norm=d.ir_norm, ir_mean=d.ir_mean,
        ir_std=d.ir_std, ir_channels=d.ir_channels, crop=d.crop if train else None,
    )


def build_dataset(cfg: Config, split: str, train: bool, strict: bool = True):
    return build_det_dataset(cfg.data.dataset, cfg.data.root, split, build_transforms(cfg, train), strict=strict,
                             **cfg.data.dataset_options())


def eval_split(cfg: Config, stage: str) -> str:
    return cfg.data.val_split if stage == "val" else test_split_of(cfg)


# ---------------------------------------------------------------------------------------------------- model
def build_det_model(cfg: Config, num_classes: int) -> DetectionModel:
    """``model.head`` is the detector (``fcos``, ``retinanet``, ``fasterrcnn``); ``model.head_kwargs`` go to
    :class:`DetectionModel` (``fpn_channels``, ``levels``, ``score_thresh``, ``detector_kwargs`` ...)."""
    m = cfg.model
    return DetectionModel(backbone_from_config(m), m.head, num_classes=num_classes, **dict(m.head_kwargs))


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


class DetEvaluator:
    """COCO metrics overall and per condition; the state is this rank's detections and image conditions.

    Args:
        ground_truth: returns the split's COCO ground truth (called once, on rank 0, at :meth:`evaluate`).
    """

    def __init__(self, ground_truth) -> None:
        self.ground_truth = ground_truth
        self.reset()

    def reset(self) -> None:
        self.detections: list[dict[str, Any]] = []
        self.conditions: dict[int, str | None] = {}

    def process(self, batch: dict[str, Any], outputs: list[dict[str, torch.Tensor]], keep: list[int]) -> None:
        for i in keep:
            det, meta = outputs[i], batch["meta"][i]
            image_id = int(meta["image_id"])
            self.conditions[image_id] = meta.get("condition")
            self.detections += to_coco_detections({**det, "boxes": rescale_boxes(det["boxes"], meta)}, image_id)

    def state(self) -> tuple[list[dict], dict[int, str | None]]:
        return self.detections, self.conditions

    def merge(self, states: list[tuple[list[dict], dict[int, str | None]]]) -> None:
        self.reset()
        for dets, conds in states:
            self.detections += dets
            self.conditions |= conds

    def evaluate(self) -> dict[str, dict]:
        gt = self.ground_truth()
        conds = self.conditions
        groups = {"all": set(conds)} | {c: {i for i, cc in conds.items() if cc == c}
                                        for c in sorted({c for c in conds.values() if c})}
        return {name: coco_evaluate(subset_coco(gt, ids), [d for d in self.detections if d["image_id"] in ids])
                for name, ids in groups.items() if ids}


class DetTask(IVTaskModule):
    """Trains a :class:`DetectionModel`; validation / test report COCO mAP overall and per condition."""

    def __init__(self, cfg: Config, classes: list[str]) -> None:
        super().__init__(cfg)
        self.classes = list(classes)
        self.model = build_det_model(cfg, len(self.classes))

    def forward(self, vis, ir, targets=None):
        return self.model(vis, ir, targets)

    def loss_terms(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        targets = [{"boxes": b, "labels": lab, "ignore": ig}
                   for b, lab, ig in zip(batch["boxes"], batch["labels"], batch["ignore"], strict=True)]
        return self.model(batch["vis"], batch["ir"], targets)

    def eval_outputs(self, batch: dict[str, Any]) -> list[dict[str, torch.Tensor]]:
        return self.model(batch["vis"], batch["ir"])  # eval mode: Lightning switched it

    def make_evaluator(self, stage: str) -> DetEvaluator:
        split = eval_split(self.cfg, stage)
        return DetEvaluator(lambda: self.trainer.datamodule.dataset(split).to_coco())

    def logged_metrics(self, stage: str, results: dict[str, dict]) -> dict[str, float]:
        out = {}
        for name, res in results.items():
            suffix = "" if name == "all" else f"_{name}"
            for key in ("mAP", "AP50"):
                if res.get(key) is not None:
                    out[f"{stage}/{key}{suffix}"] = float(res[key])
        return out

    def checkpoint_meta(self) -> dict[str, Any]:
        return {"classes": self.classes, "detector": self.model.detector_name}


# ---------------------------------------------------------------------------------------------------- interface
def dataset_info(dataset) -> dict[str, Any]:
    return {"classes": list(dataset.classes)}


def build_module(cfg: Config, info: dict[str, Any]) -> DetTask:
    return DetTask(cfg, info["classes"])


def write_eval_report(results: dict[str, dict], info: dict[str, Any], out_dir: Path) -> None:
    write_det_report(results, info["classes"], out_dir)
    for cond, res in results.items():  # pr_curves.png (all images), pr_curves_day.png, ...
        name = "pr_curves.png" if cond == "all" else f"pr_curves_{cond}.png"
        plot_pr_curves(res, info["classes"], Path(out_dir) / name)


def _fmt(v: Any) -> str:
    return "  n/a" if v is None else f"{float(v):5.2f}"


def format_results(results: dict[str, dict]) -> str:
    return "\n".join(f"{cond:>6}: mAP {_fmt(r.get('mAP'))}  AP50 {_fmt(r.get('AP50'))}  AP75 {_fmt(r.get('AP75'))}"
                     for cond, r in results.items())


def draw_detections(rgb: np.ndarray, det: dict[str, torch.Tensor], classes: list[str],
                    score_thresh: float = DRAW_SCORE_THRESH) -> np.ndarray:
    """Boxes with class name and score drawn on an (H, W, 3) uint8 image."""
    from PIL import Image, ImageDraw

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

    images, results = [], []

    def raw_sample(rgb, thermal, name, vis_file, ir_file, image_id):
        h, w = rgb.shape[:2]
        images.append({"id": image_id, "file_name": str(vis_file), "ir_file_name": str(ir_file), "height": h,
                       "width": w})
        return {"vis": rgb, "ir": thermal, "boxes": np.zeros((0, 4), np.float32), "labels": np.zeros(0, np.int64),
                "ignore": np.zeros(0, bool),
                "meta": {"name": name, "vis_path": str(vis_file), "ir_path": str(ir_file), "ann_path": None,
                         "condition": None, "orig_size": (h, w), "image_id": image_id}}

    def run(model, sample, dev):
        det = model.predict(sample["vis"].to(dev), sample["ir"].to(dev))[0]
        return {k: v.cpu() for k, v in det.items()}

    def write(name, rgb, thermal, sample, det, out) -> Path:
        det["boxes"] = rescale_boxes(det["boxes"], {**sample["meta"], "orig_size": rgb.shape[:2]})
        ir_rgb = np.repeat(thermal[..., None], 3, axis=2)
        panel = np.concatenate([draw_detections(rgb, det, module.classes),
                                draw_detections(ir_rgb, det, module.classes)], axis=1)
        path = out / f"{name}_det.png"
        Image.fromarray(panel).save(path)
        results.extend(to_coco_detections(det, sample["meta"]["image_id"]))
        return path

    written = predict_loop(module.model, build_transforms(cfg, train=False), pairs, out_dir, device, raw_sample,
                           run, write)
    payload = {"images": images, "categories": [{"id": i + 1, "name": c} for i, c in enumerate(module.classes)],
               "detections": results}
    (out_dir / "detections.json").write_text(json.dumps(payload, indent=1) + "\n")
    return written


TASK = Task(
    name="det",
    description="object detection (COCO mAP per condition; KAIST miss rate)",
    data_config=DetDataConfig,
    datasets=DET_DATASETS,
    build_dataset=build_dataset,
    collate=collate_det,
    dataset_info=dataset_info,
    build_module=build_module,
    write_report=write_eval_report,
    format_results=format_results,
    predict=predict,
)
