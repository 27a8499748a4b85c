"""RGB-T salient object detection as a registered task (docs/METHOD.md section 9.1): data, model, loss, metrics.

Samples, batching by global step, evaluation sharding and checkpoints are the engine's; what is SOD's own is the
head (:class:`ivtune.tasks.sod.model.SaliencyModel`), the loss (BCE + IoU on four outputs) and the metrics:

- evaluation follows the authors' protocol: the images are resized to ``data.size`` (384), the sigmoid of the final
  output is min-max normalised per image and resized bilinearly to the ground truth's size, then scored with
  py_sod_metrics (:class:`ivtune.tasks.sod.metrics.SODMetrics`) against the original-size binary ground truth;
- results are keyed ``"dataset/split"`` (``vt821/test``); under DDP every rank's per-image results are gathered
  (the engine's one gather) and the means taken once, so each image counts once.

A split may name another dataset: ``DATASET/SPLIT`` (e.g. ``vt821/test``) reads that dataset from the root given in
``data.roots.DATASET``, so one run is evaluated on several test sets::

    ivtune eval runs/vt5000_swin_l_cpnet --split vt821/test --set data.roots.vt821=/data/VT821
"""

from __future__ import annotations

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
from .config import SODDataConfig
from .datasets import SOD_DATASETS, build_sod_dataset
from .metrics import METRIC_KEYS, SODMetrics, write_sod_report
from .model import SaliencyModel
from .transforms import build_sod_transforms


# ---------------------------------------------------------------------------------------------------- data
def build_transforms(cfg: Config, train: bool):
    d = cfg.data
    return build_sod_transforms(
        train=train,
        size=tuple(d.size) if d.size else None,
        hflip=d.hflip,
        crop_border=d.crop_border,
        rotation=d.rotation,
        rotation_p=d.rotation_p,
        photometric=d.photometric,
        **d.normalization(),
        gt_noise=d.gt_noise,
    )


def resolve_split(cfg: Config, split: str) -> tuple[str, str | None, str]:
    """``(dataset, root, split)`` for ``split`` or ``DATASET/SPLIT`` (root from ``data.roots``)."""
    if "/" not in split:
        return cfg.data.dataset, cfg.data.root, split
    name, _, sub = split.partition("/")
    if name not in SOD_DATASETS:
        raise ConfigError(f"split {split!r}: {name!r} is not an SOD dataset ({', '.join(SOD_DATASETS)}).")
    if name == cfg.data.dataset:
        return name, cfg.data.root, sub
    roots = cfg.data.roots
    if name != "synthetic" and name not in roots:
        raise ConfigError(f"split {split!r} reads dataset {name!r}: give its folder with --set "
                          f"data.roots.{name}=PATH")
    return name, roots.get(name), sub


def build_dataset(cfg: Config, split: str, train: bool, strict: bool = True):
    name, root, sub = resolve_split(cfg, split)
    options = cfg.data.dataset_options()
    if name != cfg.data.dataset:  # another dataset: only the options every SOD dataset takes carry over
        options = {k: v for k, v in options.items() if k in ("resize_gt", "ir_high_depth")}
    ds = build_sod_dataset(name, root, sub, strict=strict, keep_gt=not train, **options)
    ds.transform = build_transforms(cfg, train)
    return ds


# ---------------------------------------------------------------------------------------------------- model
def build_sod_model(cfg: Config) -> SaliencyModel:
    m = cfg.model
    if m.head != "cpnet":
        raise ConfigError(f"model.head {m.head!r} is not an SOD head; use cpnet (the CPNet-style decoder).")
    kwargs = dict(m.head_kwargs)
    level_norm = kwargs.pop("level_norm", None)
    return SaliencyModel(backbone_from_config(m), kwargs, level_norm=level_norm)


def predict_saliency(model: SaliencyModel, vis: torch.Tensor, ir: torch.Tensor) -> torch.Tensor:
    """Sigmoid of the final output, (B, 1, H, W), for any input size (padded to the patch multiple, cropped back)."""
    multiple = model.backbone.input_multiple
    vis_p, (h, w) = pad_to_multiple(vis, multiple)
    ir_p, _ = pad_to_multiple(ir, multiple)
    return torch.sigmoid(model(vis_p, ir_p)[0][..., :h, :w].float())


def to_gt_size(prob: torch.Tensor, size: tuple[int, int]) -> np.ndarray:
    """One (1, h, w) saliency map -> per-image min-max normalised, bilinear to ``size``, float64 in [0, 1]."""
    lo, hi = prob.min(), prob.max()
    prob = (prob - lo) / (hi - lo) if hi > lo else torch.zeros_like(prob)
    out = F.interpolate(prob[None], size=tuple(size), mode="bilinear", align_corners=False)[0, 0]
    return out.clamp(0.0, 1.0).cpu().numpy().astype(np.float64)


class SODEvaluator:
    """SOD metrics per ``dataset/split`` key; the state is every image's per-image results (merged by union)."""

    def reset(self) -> None:
        self.metrics: dict[str, SODMetrics] = {}

    def process(self, batch: dict[str, Any], outputs: torch.Tensor, keep: list[int]) -> None:
        for i in keep:
            meta = batch["meta"][i]
            gt = meta["gt"]
            self.metrics.setdefault(meta["dataset"], SODMetrics()).update(to_gt_size(outputs[i], gt.shape), gt)

    def state(self) -> dict[str, Any]:
        return {key: m.state() for key, m in self.metrics.items()}

    def merge(self, states: list[dict[str, Any]]) -> None:
        keys = sorted({k for s in states for k in s})  # a rank may hold none of a dataset's images
        self.metrics = {}
        for key in keys:
            self.metrics[key] = SODMetrics()
            self.metrics[key].merge([s[key] for s in states if key in s])

    def evaluate(self) -> dict[str, dict]:
        return {key: m.compute() for key, m in sorted(self.metrics.items()) if len(m)}


class SODTask(IVTaskModule):
    """Trains a :class:`SaliencyModel`; validation / test report the SOD metrics per dataset/split."""

    def __init__(self, cfg: Config) -> None:
        super().__init__(cfg)
        self.model = build_sod_model(cfg)

    def eval_outputs(self, batch: dict[str, Any]) -> torch.Tensor:
        return predict_saliency(self.model, batch["vis"], batch["ir"])

    def make_evaluator(self, stage: str) -> SODEvaluator:
        return SODEvaluator()

    def logged_metrics(self, stage: str, results: dict[str, dict]) -> dict[str, float]:
        out = {}
        for key, res in results.items():
            for name in ("Sm", "wFm", "meanEm", "maxFm", "MAE"):
                tag = f"{stage}/{name.lower()}" if len(results) == 1 else f"{stage}/{key}/{name.lower()}"
                out[tag] = res[name]
        return out

    def checkpoint_meta(self) -> dict[str, Any]:
        return {"task": "sod"}


# ---------------------------------------------------------------------------------------------------- interface
def dataset_info(dataset) -> dict[str, Any]:
    return {"task": "sod", "classes": ["background", "salient"], "trained_on": getattr(dataset, "name", None)}


def build_module(cfg: Config, info: dict[str, Any]) -> SODTask:
    return SODTask(cfg)


def write_eval_report(results: dict[str, dict], info: dict[str, Any], out_dir: Path) -> None:
    write_sod_report(results, out_dir)


def format_results(results: dict[str, dict]) -> str:
    return "\n".join(f"{key}: " + "  ".join(f"{k} {res[k]:.3f}" for k in METRIC_KEYS) + f"  ({res['num_images']} "
                     "images)" for key, res in results.items())


# ---------------------------------------------------------------------------------------------------- deployment
@dataclass(frozen=True)
class SODPrediction:
    """One pair's saliency map at the input image's size: (H, W) float64 in [0, 1], min-max normalised per image
    and resized bilinearly from the model's input size, exactly as the evaluation scores it (:func:`to_gt_size`)."""

    saliency: np.ndarray


class SODGraph(DeployGraph):
    """The exported part of an SOD run: padded, normalised pair -> sigmoid of the final output (B, 1, H, W)."""

    output_names = ("saliency",)

    def forward(self, vis: torch.Tensor, ir: torch.Tensor) -> tuple[torch.Tensor]:
        return (torch.sigmoid(self.model(vis, ir)[0].float()),)


def deploy_inputs(module: SODTask) -> InputSpec:
    """The evaluation transform: resize to ``data.size`` (if set), the normalisation, padding to the patch multiple."""
    transform = build_transforms(module.cfg, train=False)
    size = module.cfg.data.size
    return InputSpec.from_normalize(transform.steps[-1], size=tuple(size) if size else None,
                                    pad_multiple=module.model.backbone.input_multiple)


def deploy_info(module: SODTask) -> dict[str, Any]:
    return {"classes": ["background", "salient"]}


def deploy_postprocess(outputs: dict[str, torch.Tensor], ctx: PredictContext, info: dict[str, Any]
                       ) -> SODPrediction:
    h, w = ctx.input_size
    return SODPrediction(to_gt_size(outputs["saliency"][0, :, :h, :w].float(), tuple(ctx.orig_size)))


DEPLOY = TaskDeployment(deploy_inputs, SODGraph, deploy_info, deploy_postprocess)


def predict(predictor: PairPredictor, pairs: list[tuple[str, Path, Path]], out_dir: Path) -> list[Path]:
    """Writes ``NAME.png`` (saliency 0-255 at the input's original size) and ``NAME_panel.png`` (VIS | IR | map)."""
    from ...data.io import write_image

    def write(name, rgb, thermal, result: SODPrediction, out) -> Path:
        sal = np.round(result.saliency * 255).astype(np.uint8)
        write_image(out / f"{name}.png", sal)  # atomic: a full disk leaves no partial file
        panel = np.concatenate([rgb, np.repeat(thermal[..., None], 3, 2), np.repeat(sal[..., None], 3, 2)], axis=1)
        write_image(out / f"{name}_panel.png", panel)
        return out / f"{name}.png"

    return predict_files(predictor, pairs, out_dir, write)


# name, description, data section, datasets, then the functions in the order of the Task fields
TASK = Task("sod", "RGB-T salient object detection (S, F, E, MAE per dataset)",
            SODDataConfig, SOD_DATASETS, build_dataset, collate_pairs, dataset_info, build_module,
            write_eval_report, format_results, predict)
