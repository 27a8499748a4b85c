"""Semantic segmentation as a registered task: datasets, model, loss, mIoU per condition, prediction files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ...backbones.neck import pad_to_multiple
from ...config import Config
from ...data.pairs import collate_pairs
from ...engine.backbone import backbone_from_config
from ...engine.module import IVTaskModule
from ...engine.predict import plain_raw_sample, predict_loop
from ...engine.task import Task
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
        ir_norm=d.ir_norm,
        ir_mean=d.ir_mean,
        ir_std=d.ir_std,
        ir_channels=d.ir_channels,
        ignore_index=ignore_index,
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

    def forward(self, vis: torch.Tensor, ir: torch.Tensor) -> torch.Tensor:
        return self.model(vis, ir)

    def loss_terms(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        return {"loss": self.model.loss(self.model(batch["vis"], batch["ir"]), batch["mask"])}

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


def predict(module: SegTask, cfg: Config, pairs: list[tuple[str, Path, Path]], out_dir: Path,
            device: str = "cpu") -> list[Path]:
    """Writes ``NAME_mask.png`` (palette PNG of class indices), ``NAME_color.png`` and ``NAME_overlay.png``."""
    from PIL import Image

    from ...viz import colorize_mask, overlay

    palette = module.palette
    flat = [c for rgb_ in palette for c in rgb_]

    def run(model, sample, dev):
        return predict_logits(model, sample["vis"][None].to(dev), sample["ir"][None].to(dev))

    def write(name, rgb, thermal, sample, logits, out) -> Path:
        mask = logits.argmax(1)[0].cpu().numpy().astype(np.uint8)
        index_png = Image.fromarray(mask, mode="P")
        index_png.putpalette(flat + [0] * (768 - len(flat)))
        index_png.save(out / f"{name}_mask.png")
        color = colorize_mask(mask, palette)
        Image.fromarray(color).save(out / f"{name}_color.png")
        Image.fromarray(overlay(rgb, color)).save(out / f"{name}_overlay.png")
        return out / f"{name}_mask.png"

    transform = build_transforms(cfg, train=False, ignore_index=module.ignore_index)
    written = predict_loop(module.model, transform, pairs, out_dir, device, plain_raw_sample, run, write)
    (out_dir / "classes.json").write_text(json.dumps({"classes": module.classes, "palette": palette}, indent=2))
    return written


TASK = Task(
    name="seg",
    description="semantic segmentation (mIoU per condition)",
    data_config=SegDataConfig,
    datasets=DATASETS,
    build_dataset=build_dataset,
    collate=collate_pairs,
    dataset_info=dataset_info,
    build_module=build_module,
    write_report=write_eval_report,
    format_results=format_results,
    predict=predict,
)
