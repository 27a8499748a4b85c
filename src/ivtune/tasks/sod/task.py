"""RGB-T salient object detection as a Lightning task (SPEC.md section 9.1): data, model, loss, metrics, predict.

The engine (:mod:`ivtune.engine.run`) drives it through the interface of :mod:`ivtune.tasks`. Samples, batching by
global step, evaluation sharding and checkpoints are those of the segmentation task; what differs is the head
(:class:`ivtune.heads.sod.SaliencyModel`), the loss (BCE + IoU on four outputs) and the metrics:

- evaluation follows the authors' protocol: the images are resized to ``data.crop_size`` (384), the sigmoid of the
  final output is min-max normalised per image and resized bilinearly to the ground truth's size, then scored with
  py_sod_metrics (:class:`ivtune.metrics.sod.SODMetrics`) against the original-size binary ground truth;
- results are keyed ``"dataset/split"`` (``vt821/test``). Under DDP each rank scores its own images; at the end of
  the epoch the per-image results are gathered to every rank (``all_gather_object``) and the means taken there, so
  each image counts once and all ranks report the same numbers.

A split may name another dataset: ``DATASET/SPLIT`` (e.g. ``vt821/test``) reads that dataset from the root given in
``data.options.roots.DATASET``, so one run is evaluated on several test sets::

    ivtune eval runs/vt5000_swin_l_cpnet --split vt821/test --set data.options.roots.vt821=/data/VT821
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..backbones.factory import build_backbone
from ..config import DATASETS_BY_TASK, Config
from ..data.pairs import collate_pairs
from ..data.sod import build_sod_dataset
from ..data.sod_transforms import build_sod_transforms
from ..engine.datamodule import PairedDataModule
from ..engine.module import IVTaskModule
from ..errors import ConfigError
from ..heads.sod import SaliencyModel
from ..metrics.sod import METRIC_KEYS, SODMetrics, write_sod_report
from .seg import check_pair_size, pad_to_multiple

# keys of data.options read by the task itself, not passed to the dataset
TASK_OPTIONS = ("roots", "crop_border", "rotation", "rotation_p", "gt_noise")


# ---------------------------------------------------------------------------------------------------- data
def build_transforms(cfg: Config, train: bool):
    d = cfg.data
    o = d.options
    return build_sod_transforms(
        train=train,
        size=tuple(d.crop_size) if d.crop_size else None,
        hflip=d.hflip,
        crop_border=int(o.get("crop_border", 30)),
        rotation=float(o.get("rotation", 15.0)),
        rotation_p=float(o.get("rotation_p", 0.2)),
        photometric=d.photometric,
        ir_norm=d.ir_norm,
        ir_mean=d.ir_mean,
        ir_std=d.ir_std,
        ir_channels=d.ir_channels,
        gt_noise=float(o.get("gt_noise", 0.0)),
    )


def resolve_split(cfg: Config, split: str) -> tuple[str, str | None, str]:
    """``(dataset, root, split)`` for ``split`` or ``DATASET/SPLIT`` (root from ``data.options.roots``)."""
    if "/" not in split:
        return cfg.data.dataset, cfg.data.root, split
    name, _, sub = split.partition("/")
    if name not in DATASETS_BY_TASK["sod"]:
        raise ConfigError(f"split {split!r}: {name!r} is not an SOD dataset ({', '.join(DATASETS_BY_TASK['sod'])}).")
    if name == cfg.data.dataset:
        return name, cfg.data.root, sub
    roots = cfg.data.options.get("roots") or {}
    if name != "synthetic" and name not in roots:
        raise ConfigError(f"split {split!r} reads dataset {name!r}: give its folder with --set "
                          f"data.options.roots.{name}=PATH")
    return name, roots.get(name), sub


def build_dataset(cfg: Config, split: str, train: bool, strict: bool = True):
    name, root, sub = resolve_split(cfg, split)
    options = {k: v for k, v in cfg.data.options.items() if k not in TASK_OPTIONS}
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
    backbone = build_backbone(
        m.backbone, method=m.method, pretrained=m.pretrained, weights=m.weights, out_indices=m.out_indices,
        adapter_init=m.adapter_init, adapter_dropout=m.adapter_dropout, **m.timm_kwargs,
    )
    if m.grad_checkpointing:
        backbone.set_grad_checkpointing(True)
    kwargs = dict(m.head_kwargs)
    level_norm = kwargs.pop("level_norm", None)
    return SaliencyModel(backbone, kwargs, level_norm=level_norm)


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


class SODTask(IVTaskModule):
    """Trains a :class:`SaliencyModel`; validation / test report the SOD metrics per dataset/split."""

    def __init__(self, cfg: Config) -> None:
        super().__init__(cfg)
        self.model = build_sod_model(cfg)
        self._metrics: dict[str, SODMetrics] = {}

    def forward(self, vis: torch.Tensor, ir: torch.Tensor) -> list[torch.Tensor]:
        return self.model(vis, ir)

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        loss = self.model.loss(self.model(batch["vis"], batch["ir"]), batch["mask"])
        if not torch.isfinite(loss):
            names = [m["name"] for m in batch["meta"]]
            raise FloatingPointError(f"non-finite loss {loss.item()} at step {self.global_step} on {names}; lower "
                                     "optim.lr or use precision 32")
        self.log("train/loss", loss, prog_bar=True, on_step=True, on_epoch=False, batch_size=batch["vis"].shape[0])
        self.log("train/lr", self.optimizers().param_groups[0]["lr"], on_step=True, on_epoch=False)
        return loss

    # ---------------------------------------------------------------- evaluation
    def on_validation_epoch_start(self) -> None:
        self._metrics = {}

    def on_test_epoch_start(self) -> None:
        self._metrics = {}

    def _eval_step(self, batch: dict[str, Any]) -> None:
        prob = predict_saliency(self.model, batch["vis"], batch["ir"])
        for i, meta in enumerate(batch["meta"]):
            if not meta.get("counted", True):
                continue  # padding that evens out the ranks
            gt = meta["gt"]
            self._metrics.setdefault(meta["dataset"], SODMetrics()).update(to_gt_size(prob[i], gt.shape), gt)

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._eval_step(batch)

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._eval_step(batch)

    def _finish_eval(self, prefix: str) -> None:
        keys = self._all_keys()
        results = {}
        for key in keys:
            acc = self._metrics.setdefault(key, SODMetrics())
            acc.all_gather()
            if len(acc) == 0:
                continue
            results[key] = acc.compute()
        for key, res in results.items():
            for name in ("Sm", "wFm", "meanEm", "maxFm", "MAE"):
                tag = f"{prefix}/{name.lower()}" if len(results) == 1 else f"{prefix}/{key}/{name.lower()}"
                self.log(tag, res[name], sync_dist=False, rank_zero_only=False)
        self.eval_results = results

    def _all_keys(self) -> list[str]:
        """Dataset keys seen on any rank (a rank may hold none of a dataset's images)."""
        import torch.distributed as dist

        keys = sorted(self._metrics)
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            gathered: list[Any] = [None] * dist.get_world_size()
            dist.all_gather_object(gathered, keys)
            keys = sorted({k for ks in gathered for k in ks})
        return keys

    def on_validation_epoch_end(self) -> None:
        self._finish_eval("val")

    def on_test_epoch_end(self) -> None:
        self._finish_eval("test")

    def checkpoint_meta(self) -> dict[str, Any]:
        return {"task": "sod"}


# ---------------------------------------------------------------------------------------------------- interface
def dataset_info(dataset) -> dict[str, Any]:
    return {"task": "sod", "classes": ["background", "salient"], "trained_on": getattr(dataset, "name", None)}


def build_module(cfg: Config, info: dict[str, Any]) -> SODTask:
    return SODTask(cfg)


def build_datamodule(cfg: Config) -> PairedDataModule:
    return PairedDataModule(cfg, build_dataset, collate_pairs)


def write_eval_report(results: dict[str, dict], info: dict[str, Any], out_dir: Path) -> None:
    write_sod_report(results, out_dir)


def format_results(results: dict[str, dict]) -> str:
    return "\n".join(f"{key}: " + "  ".join(f"{k} {res[k]:.3f}" for k in METRIC_KEYS) + f"  ({res['num_images']} "
                     "images)" for key, res in results.items())


def predict(module: SODTask, cfg: Config, pairs: list[tuple[str, Path, Path]], out_dir: Path,
            device: str = "cpu") -> list[Path]:
    """Writes ``NAME.png`` (saliency 0-255 at the input's original size) and ``NAME_panel.png`` (VIS | IR | map)."""
    from PIL import Image

    from ..data.io import read_gray, read_rgb

    model = module.model.to(device).eval()
    transform = build_transforms(cfg, train=False)
    written = []
    for name, vis_file, ir_file in pairs:
        rgb, thermal = read_rgb(vis_file), read_gray(ir_file)
        check_pair_size(rgb, thermal, vis_file, ir_file)
        sample = transform({"vis": rgb, "ir": thermal, "meta": {"name": name}}, rng=0)
        with torch.no_grad():
            prob = predict_saliency(model, sample["vis"][None].to(device), sample["ir"][None].to(device))
        sal = np.round(to_gt_size(prob[0], rgb.shape[:2]) * 255).astype(np.uint8)
        Image.fromarray(sal, "L").save(out_dir / f"{name}.png")
        panel = np.concatenate([rgb, np.repeat(thermal[..., None], 3, 2), np.repeat(sal[..., None], 3, 2)], axis=1)
        Image.fromarray(panel).save(out_dir / f"{name}_panel.png")
        written.append(out_dir / f"{name}.png")
    return written
