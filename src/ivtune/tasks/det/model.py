"""``DetectionModel``: IV backbone (VIS + IR) -> FPN neck -> a torchvision detector's heads (docs/METHOD.md 9.3).

torchvision's detectors normalise, resize and batch ONE image list in ``GeneralizedRCNNTransform``. Here the two
images of a pair arrive already normalised by the dataset transforms, so that transform is bypassed: VIS and IR are
padded identically (bottom / right, value 0 = the mean colour after normalisation) to one size that is a multiple
of ``size_divisible``, the IV backbone + FPN run once on the pair, and the detector's own parts (FCOS / RetinaNet
head, anchor generator, loss and post-processing; Faster R-CNN's RPN and RoI heads) run on those features with an
:class:`~torchvision.models.detection.image_list.ImageList` whose ``image_sizes`` are the unpadded sizes, so every
box stays in the input tensor's pixel coordinates and nothing is predicted in the padding.

Labels are 0-based in and out. Faster R-CNN's softmax reserves class 0 for the background, so its labels are shifted
by one inside; FCOS and RetinaNet classify with per-class sigmoids and need no background class.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.detection import FCOS, FasterRCNN, RetinaNet
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.image_list import ImageList
from torchvision.ops import MultiScaleRoIAlign

from ...errors import ConfigError, InputShapeError
from .detector import PairDetector
from .fcos_regression import ExpScaleRegressionHead
from .neck import DetNeck
from .rtdetr import RTDETRDetector

# FCOS box sides: "exp" = exp(scale_i * x) as in the FCOS paper (see fcos_regression.py), "relu" = torchvision's
FCOS_BOX_SIDES = ("exp", "relu")
# detector -> (default backbone levels, extra FPN levels); torchvision's own FPN layouts
DETECTORS = {"fcos": ((1, 2, 3), "p6p7"), "retinanet": ((1, 2, 3), "p6p7"), "fasterrcnn": ((0, 1, 2, 3), "maxpool")}
# every value of model.head: the torchvision detectors above and RT-DETR (transformers, the ``detr`` extra)
HEADS = (*DETECTORS, "rtdetr")


class _NoBackbone(nn.Module):
    """Stands in for torchvision's backbone at construction (it reads ``out_channels``); never called."""

    def __init__(self, out_channels: int) -> None:
        super().__init__()
        self.out_channels = out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("DetectionModel runs the IV backbone itself; the torchvision backbone slot is unused")


def default_size_divisible(input_multiple: int) -> int:
    """32 (the FPN's coarsest regular stride) when the patch size divides it, else the smallest multiple of the
    patch size >= 32 (patch 14 -> 42: the backbone needs multiples of its patch; the pyramid sizes are exact)."""
    return 32 if 32 % input_multiple == 0 else input_multiple * math.ceil(32 / input_multiple)


def pad_batch(images: Sequence[torch.Tensor], size: tuple[int, int]) -> torch.Tensor:
    """Stack CHW images into one NCHW batch, zero-padded bottom / right to ``size``."""
    return torch.stack([F.pad(x, (0, size[1] - x.shape[-1], 0, size[0] - x.shape[-2])) for x in images])


class DetectionModel(PairDetector):
    """Object detection on visible + infrared pairs with a torchvision detector over an FPN on an IV backbone.

    The backbone's trainability is left as built (``build_backbone(method=...)`` decides it); neck and detector
    train in full.

    Args:
        backbone: an :class:`ivtune.IVBackbone` (``forward(vis, ir) -> list[NCHW]``, ``out_channels``, ``strides``,
            ``input_multiple``, ``family.hierarchical``).
        detector: ``fcos``, ``retinanet`` or ``fasterrcnn``.
        num_classes: object classes, without a background class.
        fpn_channels: FPN width (256 in torchvision's detectors).
        levels: backbone levels fed to the FPN; default FCOS / RetinaNet ``(1, 2, 3)`` + P6 / P7 (strides 8-128),
            Faster R-CNN ``(0, 1, 2, 3)`` + max-pool level (strides 4-64), as torchvision builds them.
        level_norm: trainable per-level LayerNorm before the FPN; ``None``: on for hierarchical backbones (Swin).
        size_divisible: pad the batch to a multiple of this; default :func:`default_size_divisible`.
        score_thresh: drop detections scoring below this (0.05: low, for mAP).
        nms_thresh: per-class NMS IoU of the post-processing.
        detections_per_img: boxes kept per image.
        fcos_box_sides: FCOS only: ``exp`` (default; the FCOS paper's ``exp(s_i * x)`` with a trainable scale per
            level, which cannot die) or ``relu`` (torchvision's head as is; on frozen backbones one box side can
            get stuck at 0 for good, see :mod:`ivtune.heads.det.fcos_regression`).
        detector_kwargs: further keyword arguments of the torchvision detector class (``center_sampling_radius``,
            ``rpn_batch_size_per_image``, ``box_batch_size_per_image``, ``topk_candidates`` ...).
    """

    def __init__(
        self,
        backbone: nn.Module,
        detector: str = "fcos",
        *,
        num_classes: int,
        fpn_channels: int = 256,
        levels: Sequence[int] | None = None,
        level_norm: bool | None = None,
        size_divisible: int | None = None,
        score_thresh: float = 0.05,
        nms_thresh: float | None = None,
        detections_per_img: int = 100,
        fcos_box_sides: str = "exp",
        detector_kwargs: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        if detector not in DETECTORS:
            raise ConfigError(f"unknown detector {detector!r}; available: {', '.join(DETECTORS)}")
        if fcos_box_sides not in FCOS_BOX_SIDES:
            raise ConfigError(f"fcos_box_sides must be one of {', '.join(FCOS_BOX_SIDES)}, got {fcos_box_sides!r}.")
        if not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes < 1:
            raise ConfigError(f"num_classes must be a positive int (object classes, no background), got "
                              f"{num_classes!r}")
        for attr in ("out_channels", "strides", "input_multiple"):
            if not hasattr(backbone, attr):
                raise ConfigError(f"backbone {type(backbone).__name__} has no {attr!r}; build it with "
                                  "ivtune.build_backbone.")
        default_levels, extra = DETECTORS[detector]
        if level_norm is None:
            family = getattr(backbone, "family", None)
            level_norm = bool(getattr(family, "hierarchical", False))
        self.backbone = backbone
        self.detector_name = detector
        self.num_classes = num_classes
        self.neck = DetNeck(backbone.out_channels, backbone.strides, default_levels if levels is None else levels,
                            fpn_channels, extra, level_norm)
        self.size_divisible = int(size_divisible or default_size_divisible(backbone.input_multiple))
        if self.size_divisible % backbone.input_multiple:
            raise ConfigError(f"size_divisible {self.size_divisible} is not a multiple of the backbone's patch size "
                              f"{backbone.input_multiple}; use {default_size_divisible(backbone.input_multiple)}.")
        self.label_offset = 1 if detector == "fasterrcnn" else 0  # softmax background slot
        self.detector = self._build_detector(detector, fpn_channels, score_thresh, nms_thresh, detections_per_img,
                                             dict(detector_kwargs or {}))
        if detector == "fcos" and fcos_box_sides == "exp":
            self.detector.head.regression_head = ExpScaleRegressionHead(fpn_channels, 1, len(self.neck.strides))

    def _build_detector(self, name: str, channels: int, score_thresh: float, nms_thresh: float | None,
                        per_img: int, kwargs: dict[str, Any]) -> nn.Module:
        strides = self.neck.strides
        n_out = len(strides)
        stub = _NoBackbone(channels)
        common = {"min_size": 1, "max_size": 1, "image_mean": [0.0] * 3, "image_std": [1.0] * 3}  # transform unused
        if name == "fcos":  # one point per location, sized like its stride (torchvision: 8..128)
            anchors = AnchorGenerator(tuple((s,) for s in strides), ((1.0,),) * n_out)
            det = FCOS(stub, self.num_classes, anchor_generator=anchors, score_thresh=score_thresh,
                       nms_thresh=0.6 if nms_thresh is None else nms_thresh, detections_per_img=per_img,
                       **common, **kwargs)
        elif name == "retinanet":  # 3 scales x 3 ratios, base 4x the stride (torchvision: 32..512)
            sizes = tuple(tuple(int(4 * s * 2 ** (k / 3)) for k in range(3)) for s in strides)
            anchors = AnchorGenerator(sizes, ((0.5, 1.0, 2.0),) * n_out)
            det = RetinaNet(stub, self.num_classes, anchor_generator=anchors, score_thresh=score_thresh,
                            nms_thresh=0.5 if nms_thresh is None else nms_thresh, detections_per_img=per_img,
                            **common, **kwargs)
        else:  # RPN anchors 8x the stride (torchvision: 32..512 on strides 4..64); RoIAlign on the regular levels
            anchors = AnchorGenerator(tuple((8 * s,) for s in strides), ((0.5, 1.0, 2.0),) * n_out)
            names = [str(i) for i in range(len(self.neck.levels))]
            det = FasterRCNN(stub, self.num_classes + 1, rpn_anchor_generator=anchors,
                             box_roi_pool=MultiScaleRoIAlign(names, output_size=7, sampling_ratio=2),
                             box_score_thresh=score_thresh, box_nms_thresh=0.5 if nms_thresh is None else nms_thresh,
                             box_detections_per_img=per_img, **common, **kwargs)
        det.backbone = nn.Identity()  # the IV backbone + neck replace it; the transform is bypassed
        det.transform = nn.Identity()
        return det

    # ------------------------------------------------------------------ inputs
    def batch(self, vis: Sequence[torch.Tensor], ir: Sequence[torch.Tensor]) -> tuple[ImageList, torch.Tensor]:
        """Pad VIS and IR identically to one size divisible by ``size_divisible``: (VIS ImageList, IR batch)."""
        vis, ir, sizes, padded = self.check_pairs(vis, ir)
        return ImageList(pad_batch(vis, padded), sizes), pad_batch(ir, padded)

    def prepare_targets(self, targets: Sequence[dict[str, torch.Tensor]]) -> list[dict[str, torch.Tensor]]:
        """torchvision targets: ``ignore`` boxes and boxes without area dropped (they are never positives; the
        evaluation handles ignored regions), labels shifted for a background class where the detector has one."""
        out = []
        for t in targets:
            boxes = t["boxes"].reshape(-1, 4).float()
            labels = t["labels"].reshape(-1).long()
            keep = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
            if "ignore" in t and t["ignore"] is not None:
                keep &= ~t["ignore"].reshape(-1).bool().to(keep.device)
            if labels.numel() and (labels.min() < 0 or labels.max() >= self.num_classes):
                raise InputShapeError(f"labels must be 0-based class indices < {self.num_classes}, got "
                                      f"{labels.unique().tolist()}.")
            out.append({"boxes": boxes[keep], "labels": labels[keep] + self.label_offset})
        return out

    # ------------------------------------------------------------------ forward
    def features(self, images: ImageList, ir: torch.Tensor):
        return self.neck(self.backbone(images.tensors, ir))

    def forward(self, vis: Sequence[torch.Tensor], ir: Sequence[torch.Tensor],
                targets: Sequence[dict[str, torch.Tensor]] | None = None):
        """Train mode: a dict of losses (``targets`` required). Eval mode: per image ``{"boxes", "scores",
        "labels"}``, boxes xyxy in the input tensor's pixels, labels 0-based."""
        images, ir_batch = self.batch(vis, ir)
        if self.training:
            if targets is None:
                raise ConfigError("DetectionModel in train mode needs targets; call .eval() to predict.")
            targets = self.prepare_targets(targets)
        feats = self.features(images, ir_batch)
        run = self._fasterrcnn if self.detector_name == "fasterrcnn" else self._dense
        out = run(images, feats, targets if self.training else None)
        if self.training:
            return out
        for det in out:
            det["labels"] = det["labels"] - self.label_offset
        return out

    def _dense(self, images: ImageList, feats, targets):
        """FCOS / RetinaNet: head on every level, loss or decoding + NMS (torchvision's own methods)."""
        det = self.detector
        maps = list(feats.values())
        head_outputs = det.head(maps)
        anchors = det.anchor_generator(images, maps)
        per_level = [x.shape[-2] * x.shape[-1] for x in maps]
        if self.detector_name == "retinanet":  # A anchors per location
            per_level = [n * (head_outputs["cls_logits"].shape[1] // sum(per_level)) for n in per_level]
        if targets is not None:
            if self.detector_name == "fcos":
                return det.compute_loss(targets, head_outputs, anchors, per_level)
            return det.compute_loss(targets, head_outputs, anchors)
        split_outputs = {k: list(v.split(per_level, dim=1)) for k, v in head_outputs.items()}
        split_anchors = [list(a.split(per_level)) for a in anchors]
        return det.postprocess_detections(split_outputs, split_anchors, images.image_sizes)

    def _fasterrcnn(self, images: ImageList, feats, targets):
        det = self.detector
        proposals, rpn_losses = det.rpn(images, feats, targets)
        detections, roi_losses = det.roi_heads(feats, proposals, images.image_sizes, targets)
        return {**rpn_losses, **roi_losses} if targets is not None else detections

    # predict: PairDetector's (one pair or a batch, in eval mode)


def build_detector(backbone: nn.Module, head: str, num_classes: int, **head_kwargs: Any) -> nn.Module:
    """The detector ``head`` on ``backbone``: :class:`DetectionModel` for the torchvision detectors (``fcos``,
    ``retinanet``, ``fasterrcnn``), :class:`~ivtune.tasks.det.rtdetr.RTDETRDetector` for ``rtdetr``; both take
    ``forward(vis, ir, targets=None)`` and ``predict`` alike, so the engine runs either unchanged.

    Raises:
        ConfigError: unknown ``head`` (the message lists every one), a keyword the detector does not take (the
            message lists those it does), or ``rtdetr`` without the ``detr`` extra installed.
    """
    if head not in HEADS:
        raise ConfigError(f"unknown detector head {head!r} (model.head); available: {', '.join(HEADS)}.")
    cls, args = (RTDETRDetector, {}) if head == "rtdetr" else (DetectionModel, {"detector": head})
    # checked here so that a misspelt model.head_kwargs key is a config error naming the key, not a TypeError
    accepted = [n for n, p in inspect.signature(cls).parameters.items() if p.kind is p.KEYWORD_ONLY
                or (p.kind is p.POSITIONAL_OR_KEYWORD and n not in ("backbone", "detector"))]
    unknown = sorted(set(head_kwargs) - set(accepted) | ({"num_classes"} & set(head_kwargs)))
    if unknown:
        raise ConfigError(f"model.head_kwargs {unknown} are not options of model.head {head!r}; its options: "
                          f"{', '.join(a for a in accepted if a != 'num_classes')}.")
    return cls(backbone, num_classes=num_classes, **args, **head_kwargs)
