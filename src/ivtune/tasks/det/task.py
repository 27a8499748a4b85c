"""Object detection as a registered task: IV backbone + FPN + torchvision detector, COCO mAP per condition.

The transforms read ``data.train_sizes`` (shorter side, one drawn per sample), ``data.test_size``, ``data.max_size``
(cap of the longer side) and ``data.crop``; every other dataset option is a typed key of the dataset's own.

Evaluation: every rank collects its detections (rescaled to the original image size through ``meta["scale"]``);
the engine's gather brings them to rank 0, which runs ``coco_evaluate`` (overall and per condition) against the
split's COCO ground truth; every rank logs the same numbers.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ...config import Config
from ...data.pairs import default_palette
from ...engine.backbone import backbone_from_config
from ...engine.datamodule import test_split_of
from ...engine.module import IVTaskModule
from ...engine.predict import DeployGraph, InputSpec, PairPredictor, PredictContext, TaskDeployment, predict_files
from ...engine.task import Task
from ...errors import ConfigError
from .config import DetDataConfig
from .datasets import DET_DATASETS, build_det_dataset
from .kaist import MissRateProtocol
from .metrics import coco_evaluate, kaist_miss_rate, miss_rate_rows, plot_pr_curves, write_det_report
from .model import DetectionModel, build_detector
from .rtdetr import RTDETRDetector
from .transforms import build_det_transforms, collate_det

DRAW_SCORE_THRESH = 0.3  # boxes drawn by predict; detections.json keeps every box above the model's threshold


# ---------------------------------------------------------------------------------------------------- data
def build_transforms(cfg: Config, train: bool):
    d = cfg.data
    return build_det_transforms(
        train=train, sizes=list(d.train_sizes) if train else [d.test_size], max_size=d.max_size,
        hflip=d.hflip if train else 0.0, photometric=d.photometric and train, crop=d.crop if train else None,
        **d.normalization(),
    )


def build_dataset(cfg: Config, split: str, train: bool, strict: bool = True):
    return build_det_dataset(cfg.data.dataset, cfg.data.root, split, build_transforms(cfg, train), strict=strict,
                             **cfg.data.dataset_options())


def eval_split(cfg: Config, stage: str) -> str:
    return cfg.data.val_split if stage == "val" else test_split_of(cfg)


# ---------------------------------------------------------------------------------------------------- model
def build_det_model(cfg: Config, num_classes: int) -> DetectionModel | RTDETRDetector:
    """``model.head`` is the detector (``fcos``, ``retinanet``, ``fasterrcnn``: :class:`DetectionModel`; ``rtdetr``:
    :class:`~ivtune.tasks.det.rtdetr.RTDETRDetector`); ``model.head_kwargs`` are its keyword arguments
    (``fpn_channels``, ``levels``, ``detector_kwargs`` ...; ``num_queries``, ``d_model``, ``config_kwargs`` ...).
    ``model.detector_weights`` (rtdetr) loads a trained detector's encoder / decoder after construction; every key
    it skips is logged by name. A run's own checkpoint, loaded later, overrides all of them."""
    m = cfg.model
    if m.detector_weights is not None and m.head != "rtdetr":
        raise ConfigError(f"model.detector_weights ({m.detector_weights}) loads an RT-DETR checkpoint; it needs "
                          f"model.head: rtdetr, got {m.head!r}. Set model.detector_weights: null.")
    model = build_detector(backbone_from_config(m), m.head, num_classes, **dict(m.head_kwargs))
    if m.detector_weights is not None:  # logs its report: a warning naming every key not loaded, if any
        model.load_detector_weights(m.detector_weights)
    return model


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
    """COCO metrics overall and per condition, plus the log-average miss rate when the ground truth names a
    protocol (KAIST; docs/METHOD.md section 9.4); the state is this rank's detections and image conditions.

    Args:
        ground_truth: returns the split's COCO ground truth (called once, on rank 0, at :meth:`evaluate`).
        protocol: the miss-rate protocol; None: the ground truth's ``miss_rate_protocol`` (the KAIST dataset's
            ``data.kaist_protocol``), and no miss rate when it has none.
        fppi_decimals: see :func:`ivtune.tasks.det.kaist.log_average_miss_rate` (None: exact FPPI points).
    """

    def __init__(self, ground_truth, protocol: str | MissRateProtocol | None = None,
                 fppi_decimals: int | None = None) -> None:
        self.ground_truth = ground_truth
        self.protocol, self.fppi_decimals = protocol, fppi_decimals
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
        """``{"all": .., condition: ..}``: :func:`coco_evaluate` output, with a ``"kaist"`` miss-rate row each when a
        protocol applies (:func:`ivtune.tasks.det.metrics.miss_rate_rows`)."""
        gt = self.ground_truth()
        conds = self.conditions
        groups = {"all": set(conds)} | {c: {i for i, cc in conds.items() if cc == c}
                                        for c in sorted({c for c in conds.values() if c})}
        results = {name: coco_evaluate(subset_coco(gt, ids), [d for d in self.detections if d["image_id"] in ids])
                   for name, ids in groups.items() if ids}
        protocol = self.protocol if self.protocol is not None else gt.get("miss_rate_protocol")
        if protocol is not None and results:
            rows = miss_rate_rows(kaist_miss_rate(gt, self.detections, protocol, conds, self.fppi_decimals))
            for name, res in results.items():
                res["kaist"] = rows[name]
        return results


class DetTask(IVTaskModule):
    """Trains a :class:`DetectionModel`; validation / test report COCO mAP overall and per condition."""

    def __init__(self, cfg: Config, classes: list[str]) -> None:
        super().__init__(cfg)
        self.classes = list(classes)
        self.model = build_det_model(cfg, len(self.classes))

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
    """``metrics.json`` / ``metrics.md`` and, for rows with COCO AP, ``pr_curves.png`` (all images),
    ``pr_curves_day.png`` ..."""
    write_det_report(results, info["classes"], out_dir)
    for cond, res in results.items():
        if "precision" in res:  # miss-rate-only rows (scored KAIST files) have no PR curve
            name = "pr_curves.png" if cond == "all" else f"pr_curves_{cond}.png"
            plot_pr_curves(res, info["classes"], Path(out_dir) / name)


def _fmt(v: Any) -> str:
    return "  n/a" if v is None else f"{float(v):5.2f}"


def format_results(results: dict[str, dict]) -> str:
    """One line per row: COCO AP when scored, then MR^-2 and its protocol when scored."""
    lines = []
    for cond, r in results.items():
        parts = []
        if "mAP" in r:
            parts.append(f"mAP {_fmt(r.get('mAP'))}  AP50 {_fmt(r.get('AP50'))}  AP75 {_fmt(r.get('AP75'))}")
        if isinstance(r.get("kaist"), dict):
            parts.append(f"MR^-2 {_fmt(r['kaist'].get('mr2'))} ({r['kaist'].get('protocol')})")
        lines.append(f"{cond:>6}: " + "  ".join(parts))
    return "\n".join(lines)


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


# ---------------------------------------------------------------------------------------------------- deployment
DENSE_DETECTORS = ("fcos", "retinanet")  # their decoding + NMS runs after the graph (deploy_postprocess)


@dataclass(frozen=True)
class DetPrediction:
    """One pair's detections in the input image's pixels.

    Attributes:
        boxes: (N, 4) float32 xyxy.
        scores: (N,) float32.
        labels: (N,) int64 0-based class ids.
        classes: the class names (index = label).
    """

    boxes: np.ndarray
    scores: np.ndarray
    labels: np.ndarray
    classes: tuple[str, ...]

    def as_tensors(self) -> dict[str, torch.Tensor]:
        return {"boxes": torch.from_numpy(self.boxes), "scores": torch.from_numpy(self.scores),
                "labels": torch.from_numpy(self.labels)}


class DenseDetGraph(DeployGraph):
    """FCOS / RetinaNet up to the raw head outputs (their data-dependent decoding + NMS does not export).

    Outputs: ``cls_logits`` (1, A, K), ``bbox_regression`` (1, A, 4), FCOS's ``bbox_ctrness`` (1, A, 1), the
    ``anchors`` (A, 4) in input pixels and ``level_sizes`` (L,) int64 (anchors per pyramid level). The detections
    are :func:`decode_dense` of these: torchvision's own ``postprocess_detections`` of the detector.
    """

    def __init__(self, model: DetectionModel) -> None:
        super().__init__(model)
        self.output_names = ("cls_logits", "bbox_regression") + (
            ("bbox_ctrness",) if model.detector_name == "fcos" else ()) + ("anchors", "level_sizes")

    def forward(self, vis: torch.Tensor, ir: torch.Tensor) -> tuple[torch.Tensor, ...]:
        images, ir_batch = self.model.batch(list(vis), list(ir))
        maps = list(self.model.features(images, ir_batch).values())
        det = self.model.detector
        head = det.head(maps)
        anchors = det.anchor_generator(images, maps)[0]
        per_location = head["cls_logits"].shape[1] // sum(x.shape[-2] * x.shape[-1] for x in maps)
        # torch.full keeps the (symbolic under --dynamic) counts in the graph; torch.tensor would fix them
        sizes = torch.stack([torch.full((), x.shape[-2] * x.shape[-1] * per_location, dtype=torch.int64)
                             for x in maps])
        return tuple(head[k] for k in self.output_names[:-2]) + (anchors, sizes)


class FullDetGraph(DeployGraph):
    """Any other detector through its own ``predict``: outputs ``boxes`` (N, 4), ``scores`` (N,), ``labels`` (N,)
    in the input tensor's pixels."""

    output_names = ("boxes", "scores", "labels")

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__(model)
        if getattr(model, "detector_name", None) == "fasterrcnn":
            self.not_exportable = ("model.head fasterrcnn cannot be exported to ONNX: its RPN proposals and RoI "
                                   "pooling have data-dependent shapes. Retrain with model.head: fcos or retinanet "
                                   "(exported up to the raw head outputs), or run it in torch with "
                                   "ivtune.Predictor.from_run.")

    def forward(self, vis: torch.Tensor, ir: torch.Tensor) -> tuple[torch.Tensor, ...]:
        det = self.model.predict(vis[0], ir[0])[0]
        return det["boxes"], det["scores"], det["labels"]


def deploy_graph(module: DetTask) -> DeployGraph:
    model = module.model
    if getattr(model, "detector_name", None) in DENSE_DETECTORS:
        return DenseDetGraph(model)
    return FullDetGraph(model)


def deploy_inputs(module: DetTask) -> InputSpec:
    """The evaluation transform: keep-ratio resize to ``data.test_size`` (long side capped at ``data.max_size``),
    the normalisation; dense detectors are padded to their ``size_divisible`` (as they pad themselves)."""
    transform = build_transforms(module.cfg, train=False)
    d = module.cfg.data
    dense = getattr(module.model, "detector_name", None) in DENSE_DETECTORS
    return InputSpec.from_normalize(transform.steps[-1], short_side=int(d.test_size), max_size=d.max_size,
                                    pad_multiple=module.model.size_divisible if dense else 1)


def deploy_info(module: DetTask) -> dict[str, Any]:
    """Class names and, for FCOS / RetinaNet, the parameters of the detector's post-processing."""
    model = module.model
    info: dict[str, Any] = {"classes": list(module.classes), "detector": getattr(model, "detector_name", None)}
    if info["detector"] in DENSE_DETECTORS:
        det = model.detector
        info["decode"] = {"score_thresh": float(det.score_thresh), "nms_thresh": float(det.nms_thresh),
                          "detections_per_img": int(det.detections_per_img),
                          "topk_candidates": int(det.topk_candidates), "label_offset": int(model.label_offset)}
    return info


def decode_dense(outputs: dict[str, torch.Tensor], image_size: tuple[int, int], info: dict[str, Any]
                 ) -> dict[str, torch.Tensor]:
    """The detections of :class:`DenseDetGraph` outputs: torchvision's ``FCOS`` / ``RetinaNet``
    ``postprocess_detections`` (box decoding, score threshold, top-k per level, class-wise NMS) with the run's
    parameters (``info["decode"]``), boxes clipped to ``image_size`` (the resized, unpadded input)."""
    from types import SimpleNamespace

    from torchvision.models.detection import FCOS, RetinaNet
    from torchvision.models.detection import _utils as det_utils

    d = info["decode"]
    fcos = info["detector"] == "fcos"
    # the box coders torchvision's constructors build (FCOS: linear, normalised by size; RetinaNet: deltas)
    coder = det_utils.BoxLinearCoder(normalize_by_size=True) if fcos else det_utils.BoxCoder(weights=(1.0,) * 4)
    params = SimpleNamespace(box_coder=coder, score_thresh=d["score_thresh"], nms_thresh=d["nms_thresh"],
                             detections_per_img=d["detections_per_img"], topk_candidates=d["topk_candidates"])
    counts = [int(n) for n in outputs["level_sizes"].tolist()]
    keys = ("cls_logits", "bbox_regression") + (("bbox_ctrness",) if fcos else ())
    split = {k: list(outputs[k].float().split(counts, dim=1)) for k in keys}
    anchors = [list(outputs["anchors"].float().split(counts))]
    det = (FCOS if fcos else RetinaNet).postprocess_detections(params, split, anchors, [tuple(image_size)])[0]
    det["labels"] = det["labels"] - d["label_offset"]
    return det


def deploy_postprocess(outputs: dict[str, torch.Tensor], ctx: PredictContext, info: dict[str, Any],
                       score_thresh: float | None = None) -> DetPrediction:
    """Detections (decoded here for FCOS / RetinaNet) rescaled to the input image; ``score_thresh`` drops boxes
    below it (the model's own threshold applies first)."""
    det = dict(outputs) if "boxes" in outputs else decode_dense(outputs, ctx.input_size, info)
    (h, w), (oh, ow) = ctx.input_size, ctx.orig_size
    boxes = rescale_boxes(det["boxes"].float(), {"scale": (h / oh, w / ow), "orig_size": (oh, ow)})
    scores, labels = det["scores"].float(), det["labels"].long()
    if score_thresh is not None:
        keep = scores >= score_thresh
        boxes, scores, labels = boxes[keep], scores[keep], labels[keep]
    return DetPrediction(boxes.numpy(), scores.numpy(), labels.numpy(), tuple(info["classes"]))


DEPLOY = TaskDeployment(deploy_inputs, deploy_graph, deploy_info, deploy_postprocess)


def predict(predictor: PairPredictor, pairs: list[tuple[str, Path, Path]], out_dir: Path) -> list[Path]:
    """Writes ``NAME_det.png`` (boxes on the visible | infrared image, side by side) per pair and one COCO-style
    ``detections.json`` (``image_id`` = pair index, ``file_name``, ``category_id`` = label + 1, xywh in original
    pixels); returns the PNG paths."""
    from ...checkpoint import atomic_write
    from ...data.io import write_image

    classes = list(predictor.info["classes"])
    images, results = [], []

    def write(name, rgb, thermal, result: DetPrediction, out) -> Path:
        image_id = len(images)
        _, vis_file, ir_file = pairs[image_id]
        h, w = rgb.shape[:2]
        images.append({"id": image_id, "file_name": str(vis_file), "ir_file_name": str(ir_file), "height": h,
                       "width": w})
        det = result.as_tensors()
        ir_rgb = np.repeat(thermal[..., None], 3, axis=2)
        panel = np.concatenate([draw_detections(rgb, det, classes), draw_detections(ir_rgb, det, classes)], axis=1)
        path = out / f"{name}_det.png"
        write_image(path, panel)  # atomic: a full disk leaves no partial file
        results.extend(to_coco_detections(det, image_id))
        return path

    written = predict_files(predictor, pairs, out_dir, write)
    payload = {"images": images, "categories": [{"id": i + 1, "name": c} for i, c in enumerate(classes)],
               "detections": results}
    text = json.dumps(payload, indent=1) + "\n"
    atomic_write(out_dir / "detections.json", lambda tmp: Path(tmp).write_text(text))
    return written


# name, description, data section, datasets, then the functions in the order of the Task fields
TASK = Task("det", "object detection (COCO mAP per condition; KAIST miss rate)",
            DetDataConfig, DET_DATASETS, build_dataset, collate_det, dataset_info, build_module,
            write_eval_report, format_results, predict)
