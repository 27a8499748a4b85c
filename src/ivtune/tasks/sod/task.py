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
from ...engine.predict import plain_raw_sample, predict_loop
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
        ir_norm=d.ir_norm,
        ir_mean=d.ir_mean,
        ir_std=d.ir_std,
        ir_channels=d.ir_channels,
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

    def forward(self, vis: torch.Tensor, ir: torch.Tensor) -> list[torch.Tensor]:
        return self.model(vis, ir)

    def loss_terms(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        return {"loss": self.model.loss(self.model(batch["vis"], batch["ir"]), batch["mask"])}

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


def predict(module: SODTask, cfg: Config, pairs: list[tuple[str, Path, Path]], out_dir: Path,
            device: str = "cpu") -> list[Path]:
    """Writes ``NAME.png`` (saliency 0-255 at the input's original size) and ``NAME_panel.png`` (VIS | IR | map)."""
    from PIL import Image

    def run(model, sample, dev):
        return predict_saliency(model, sample["vis"][None].to(dev), sample["ir"][None].to(dev))

    def write(name, rgb, thermal, sample, prob, out) -> Path:
        sal = np.round(to_gt_size(prob[0], rgb.shape[:2]) * 255).astype(np.uint8)
        Image.fromarray(sal, "L").save(out / f"{name}.png")
        panel = np.concatenate([rgb, np.repeat(thermal[..., None], 3, 2), np.repeat(sal[..., None], 3, 2)], axis=1)
        Image.fromarray(panel).save(out / f"{name}_panel.png")
        return out / f"{name}.png"

    return predict_loop(module.model, build_transforms(cfg, train=False), pairs, out_dir, device, plain_raw_sample,
                        run, write)


TASK = Task(
    name="sod",
    description="RGB-T salient object detection (S, F, E, MAE per dataset)",
    data_config=SODDataConfig,
    datasets=SOD_DATASETS,
    build_dataset=build_dataset,
    collate=collate_pairs,
    dataset_info=dataset_info,
    build_module=build_module,
    write_report=write_eval_report,
    format_results=format_results,
    predict=predict,
)
