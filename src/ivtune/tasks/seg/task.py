"""Semantic segmentation as a registered task: datasets, model, loss, mIoU per condition, prediction files."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ...backbones.neck import pad_to_multiple
from ...config import Config
from ...data.pairs import collate_pairs
from ...engine.backbone import backbone_from_config
from ...engine.module import IVTaskModule
from ...engine.predict import DeployGraph, InputSpec, PairPredictor, PredictContext, TaskDeployment, predict_files
from ...engine.task import Task
from ...errors import ConfigError
from .config import SegDataConfig
from .datasets import DATASETS, build_seg_dataset
from .evaluator import SegEvaluator
from .metrics import write_seg_report
from .model import SegmentationModel
from .transforms import build_seg_transforms


# ---------------------------------------------------------------------------------------------------- data
def build_transforms(cfg: Config, train: bool, ignore_index: int):
    d = cfg.data
    return build_seg_transforms(
        train=train,
        crop_size=tuple(d.crop_size) if (train and d.crop_size) else None,
        scale_range=tuple(d.scale_range),
        hflip=d.hflip,
        photometric=d.photometric,
        ignore_index=ignore_index,
        **d.normalization(),
    )


def build_dataset(cfg: Config, split: str, train: bool, strict: bool = True):
    ds = build_seg_dataset(cfg.data.dataset, cfg.data.root, split, strict=strict, **cfg.data.dataset_options())
    ds.transform = build_transforms(cfg, train, ds.ignore_index)
    return ds


def dataset_info(dataset) -> dict[str, Any]:
    return {"classes": list(dataset.classes), "palette": [list(c) for c in dataset.palette],
            "ignore_index": int(dataset.ignore_index)}


# ---------------------------------------------------------------------------------------------------- model
def build_seg_model(cfg: Config, num_classes: int, ignore_index: int) -> SegmentationModel:
    m = cfg.model
    return SegmentationModel(backbone_from_config(m), m.head, num_classes=num_classes, ignore_index=ignore_index,
                             head_kwargs=dict(m.head_kwargs))


def predict_logits(model: SegmentationModel, vis: torch.Tensor, ir: torch.Tensor) -> torch.Tensor:
    """Logits at the input size for any input size (padded to the patch multiple, then cropped back)."""
    multiple = model.backbone.input_multiple
    vis_p, (h, w) = pad_to_multiple(vis, multiple)
    ir_p, _ = pad_to_multiple(ir, multiple)
    return model(vis_p, ir_p)[..., :h, :w]


class SegTask(IVTaskModule):
    """Trains a :class:`SegmentationModel`; validation / test report mIoU overall and per condition."""

    def __init__(self, cfg: Config, classes: list[str], ignore_index: int,
                 palette: list[tuple[int, int, int]] | None = None) -> None:
        super().__init__(cfg)
        self.classes = list(classes)
        self.ignore_index = ignore_index
        self.palette = [tuple(c) for c in palette] if palette else None
        self.model = build_seg_model(cfg, len(classes), ignore_index)

    def eval_outputs(self, batch: dict[str, Any]) -> torch.Tensor:
        return predict_logits(self.model, batch["vis"], batch["ir"])

    def make_evaluator(self, stage: str) -> SegEvaluator:
        return SegEvaluator(len(self.classes), self.ignore_index)

    def logged_metrics(self, stage: str, results: dict[str, dict]) -> dict[str, float]:
        out = {}
        for cond, res in results.items():
            out[f"{stage}/miou{'' if cond == 'all' else '_' + cond}"] = float(res["miou"])
            if cond == "all":
                out[f"{stage}/pixel_acc"] = float(res["pixel_acc"])
        return out

    def checkpoint_meta(self) -> dict[str, Any]:
        return {"classes": self.classes, "ignore_index": self.ignore_index}


def build_module(cfg: Config, info: dict[str, Any]) -> SegTask:
    return SegTask(cfg, info["classes"], info["ignore_index"], info.get("palette"))


# ---------------------------------------------------------------------------------------------------- results
def write_eval_report(results: dict[str, dict], info: dict[str, Any], out_dir: Path) -> None:
    from ...viz import plot_per_class_iou

    write_seg_report(results, info["classes"], out_dir)
    plot_per_class_iou({k: v["per_class_iou"] for k, v in results.items()}, info["classes"],
                       out_dir / "per_class_iou.png")


def format_results(results: dict[str, dict]) -> str:
    return "\n".join(f"{cond:>6}: mIoU {res['miou']:.2f}  pixel acc {res['pixel_acc']:.2f}"
                     for cond, res in results.items())


# ---------------------------------------------------------------------------------------------------- deployment
@dataclass(frozen=True)
class SegPrediction:
    """One pair's segmentation at the input image's size.

    Attributes:
        mask: (H, W) int64 class ids.
        probabilities: (K, H, W) float32 softmax, when asked for (``predict(..., probabilities=True)``), else None.
        classes: the class names (index = class id).
    """

    mask: np.ndarray
    probabilities: np.ndarray | None
    classes: tuple[str, ...]


class SegGraph(DeployGraph):
    """The exported part of a segmentation run: padded, normalised pair -> logits at the padded size."""

    output_names = ("logits",)

    def forward(self, vis: torch.Tensor, ir: torch.Tensor) -> tuple[torch.Tensor]:
        return (self.model(vis, ir),)


def deploy_inputs(module: SegTask) -> InputSpec:
    """The evaluation transform (no resize; the normalisation of ``data:``), padded to the patch multiple."""
    transform = build_transforms(module.cfg, train=False, ignore_index=module.ignore_index)
    if len(transform.steps) != 1:  # the evaluation pipeline is the normalisation alone (native size)
        raise ConfigError(f"the segmentation evaluation transform has steps {transform.steps}; the Predictor knows "
                          "only the normalisation. Describe the new step in ivtune.tasks.seg.task.deploy_inputs.")
    return InputSpec.from_normalize(transform.steps[-1], pad_multiple=module.model.backbone.input_multiple)


def deploy_info(module: SegTask) -> dict[str, Any]:
    return {"classes": list(module.classes), "palette": [list(c) for c in module.palette or []],
            "ignore_index": module.ignore_index}


def deploy_postprocess(outputs: dict[str, torch.Tensor], ctx: PredictContext, info: dict[str, Any],
                       probabilities: bool = False) -> SegPrediction:
    """Logits cropped to the image (and resized back if the transform resized it) -> class ids (+ softmax)."""
    h, w = ctx.input_size
    logits = outputs["logits"][..., :h, :w].float()
    if tuple(ctx.orig_size) != (h, w):
        logits = F.interpolate(logits, size=tuple(ctx.orig_size), mode="bilinear", align_corners=False)
    probs = logits.softmax(1)[0].numpy() if probabilities else None
    return SegPrediction(logits.argmax(1)[0].numpy(), probs, tuple(info["classes"]))


DEPLOY = TaskDeployment(deploy_inputs, SegGraph, deploy_info, deploy_postprocess)


def predict(predictor: PairPredictor, pairs: list[tuple[str, Path, Path]], out_dir: Path) -> list[Path]:
    """Writes ``NAME_mask.png`` (palette PNG of class indices), ``NAME_color.png`` and ``NAME_overlay.png``."""
    from PIL import Image

    from ...checkpoint import atomic_write
    from ...data.io import write_image
    from ...viz import colorize_mask, overlay

    classes = predictor.info["classes"]
    palette = [tuple(c) for c in predictor.info["palette"]]
    flat = [c for rgb_ in palette for c in rgb_]

    def write(name, rgb, thermal, result: SegPrediction, out) -> Path:
        mask = result.mask.astype(np.uint8)
        index_png = Image.fromarray(mask, mode="P")
        index_png.putpalette(flat + [0] * (768 - len(flat)))
        write_image(out / f"{name}_mask.png", index_png)  # atomic: a full disk leaves no partial file
        color = colorize_mask(mask, palette)
        write_image(out / f"{name}_color.png", color)
        write_image(out / f"{name}_overlay.png", overlay(rgb, color))
        return out / f"{name}_mask.png"

    written = predict_files(predictor, pairs, out_dir, write)
    text = json.dumps({"classes": classes, "palette": palette}, indent=2)
    atomic_write(out_dir / "classes.json", lambda tmp: Path(tmp).write_text(text))
    return written


# name, description, data section, datasets, then the functions in the order of the Task fields
TASK = Task("seg", "semantic segmentation (mIoU per condition)",
            SegDataConfig, DATASETS, build_dataset, collate_pairs, dataset_info, build_module,
            write_eval_report, format_results, predict)
