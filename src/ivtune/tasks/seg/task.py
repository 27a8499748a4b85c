"""Semantic segmentation as a Lightning task: model from the config, datasets, loss, mIoU per condition."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..backbones.factory import build_backbone
from ..config import Config
from ..data.datasets import build_seg_dataset
from ..data.pairs import collate_pairs
from ..data.transforms import build_seg_transforms
from ..engine.datamodule import PairedDataModule
from ..engine.module import IVTaskModule
from ..errors import DataError
from ..heads.seg import SegmentationModel
from ..metrics import ConfusionMatrix

CONDITIONS = ("day", "night", "fog")


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
    ds = build_seg_dataset(cfg.data.dataset, cfg.data.root, split, strict=strict, **cfg.data.options)
    ds.transform = build_transforms(cfg, train, ds.ignore_index)
    return ds


# ---------------------------------------------------------------------------------------------------- model
def build_seg_model(cfg: Config, num_classes: int, ignore_index: int, *, weights_required: bool = True):
    m = cfg.model
    backbone = build_backbone(
        m.backbone, method=m.method, pretrained=m.pretrained, weights=m.weights, out_indices=m.out_indices,
        adapter_init=m.adapter_init, adapter_dropout=m.adapter_dropout, **m.timm_kwargs,
    )
    if m.grad_checkpointing:
        backbone.set_grad_checkpointing(True)
    return SegmentationModel(backbone, m.head, num_classes=num_classes, ignore_index=ignore_index,
                             head_kwargs=dict(m.head_kwargs))


def pad_to_multiple(x: torch.Tensor, multiple: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """Zero-pad (after normalisation: the mean colour) bottom/right to a multiple of the patch size."""
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    return (F.pad(x, (0, pw, 0, ph)) if ph or pw else x), (h, w)


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
        self._matrices: dict[str, ConfusionMatrix] = {}

    # ---------------------------------------------------------------- training
    def forward(self, vis: torch.Tensor, ir: torch.Tensor) -> torch.Tensor:
        return self.model(vis, ir)

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        logits = self.model(batch["vis"], batch["ir"])
        loss = self.model.loss(logits, batch["mask"])
        if not torch.isfinite(loss):
            names = [m["name"] for m in batch["meta"]]
            raise FloatingPointError(f"non-finite loss {loss.item()} at step {self.global_step} on {names}; lower "
                                     "optim.lr, enable optim.grad_clip_norm or use precision 32")
        self.log("train/loss", loss, prog_bar=True, on_step=True, on_epoch=False,
                 batch_size=batch["vis"].shape[0])
        self.log("train/lr", self.optimizers().param_groups[0]["lr"], on_step=True, on_epoch=False)
        return loss

    # ---------------------------------------------------------------- evaluation
    def _reset_matrices(self) -> None:
        k = len(self.classes)
        self._matrices = {c: ConfusionMatrix(k, self.ignore_index) for c in ("all", *CONDITIONS)}

    def on_validation_epoch_start(self) -> None:
        self._reset_matrices()

    def on_test_epoch_start(self) -> None:
        self._reset_matrices()

    def _eval_step(self, batch: dict[str, Any]) -> None:
        logits = predict_logits(self.model, batch["vis"], batch["ir"])
        pred = logits.argmax(1)
        for i, meta in enumerate(batch["meta"]):
            if not meta.get("counted", True):
                continue  # padding that evens out the ranks
            for key in ("all", meta.get("condition")):
                if key in self._matrices:
                    self._matrices[key].update(pred[i: i + 1], batch["mask"][i: i + 1])

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._eval_step(batch)

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._eval_step(batch)

    def _finish_eval(self, prefix: str) -> None:
        results = {}
        for cond, cm in self._matrices.items():
            cm.all_reduce()
            if int(cm.matrix.sum()) == 0:
                continue
            res = cm.compute()
            results[cond] = res
            name = "" if cond == "all" else f"_{cond}"
            self.log(f"{prefix}/miou{name}", float(res["miou"]), sync_dist=False, rank_zero_only=False)
            if cond == "all":
                self.log(f"{prefix}/pixel_acc", float(res["pixel_acc"]), sync_dist=False)
        self.eval_results = results

    def on_validation_epoch_end(self) -> None:
        self._finish_eval("val")

    def on_test_epoch_end(self) -> None:
        self._finish_eval("test")

    def checkpoint_meta(self) -> dict[str, Any]:
        return {"classes": self.classes, "ignore_index": self.ignore_index}


# ---------------------------------------------------------------------------------------------------- interface
def dataset_info(dataset) -> dict[str, Any]:
    return {"classes": list(dataset.classes), "palette": [list(c) for c in dataset.palette],
            "ignore_index": int(dataset.ignore_index)}


def build_module(cfg: Config, info: dict[str, Any]) -> SegTask:
    return SegTask(cfg, info["classes"], info["ignore_index"], info.get("palette"))


def build_datamodule(cfg: Config) -> PairedDataModule:
    return PairedDataModule(cfg, build_dataset, collate_pairs)


def write_eval_report(results: dict[str, dict], info: dict[str, Any], out_dir: Path) -> None:
    from ..metrics import write_seg_report
    from ..viz import plot_per_class_iou

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

    from ..data.io import read_gray, read_rgb
    from ..viz import colorize_mask, overlay

    model = module.model.to(device).eval()
    transform = build_transforms(cfg, train=False, ignore_index=module.ignore_index)
    palette = module.palette
    written = []
    for name, vis_file, ir_file in pairs:
        rgb, thermal = read_rgb(vis_file), read_gray(ir_file)
        check_pair_size(rgb, thermal, vis_file, ir_file)
        sample = transform({"vis": rgb, "ir": thermal, "meta": {"name": name}}, rng=0)
        with torch.no_grad():
            logits = predict_logits(model, sample["vis"][None].to(device), sample["ir"][None].to(device))
        mask = logits.argmax(1)[0].cpu().numpy().astype(np.uint8)
        index_png = Image.fromarray(mask, mode="P")
        flat = [c for rgb_ in palette for c in rgb_]
        index_png.putpalette(flat + [0] * (768 - len(flat)))
        index_png.save(out_dir / f"{name}_mask.png")
        color = colorize_mask(mask, palette)
        Image.fromarray(color).save(out_dir / f"{name}_color.png")
        Image.fromarray(overlay(rgb, color)).save(out_dir / f"{name}_overlay.png")
        written.append(out_dir / f"{name}_mask.png")
    (out_dir / "classes.json").write_text(json.dumps({"classes": module.classes, "palette": palette}, indent=2))
    return written


def check_pair_size(vis: np.ndarray, ir: np.ndarray, vis_file: Path, ir_file: Path) -> None:
    if vis.shape[:2] != ir.shape[:2]:
        raise DataError(f"{vis_file} is {vis.shape[1]}x{vis.shape[0]} but {ir_file} is {ir.shape[1]}x{ir.shape[0]}; "
                        "register / resize the IR image to the visible one.")

