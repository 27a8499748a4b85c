"""``RTDETRDetector``: IV backbone (VIS + IR) -> RT-DETR's hybrid encoder and decoder from Hugging Face transformers.

RT-DETR (Zhao et al., "DETRs Beat YOLOs on Real-time Object Detection", arXiv 2304.08069; v2: Lv et al., arXiv
2407.17140) is an end-to-end DETR: an efficient hybrid encoder (one transformer layer on the stride-32 map + a CNN
FPN/PAN) and a deformable decoder with top-k query selection and contrastive denoising; no NMS, no anchors to tune.
This module reuses transformers' ``RTDetrV2ForObjectDetection`` (``version="v2"``) or ``RTDetrForObjectDetection``
(``"v1"``) unchanged, except for two modules swapped after construction:

- ``hf.model.backbone`` (RT-DETR's CNN slot, called as ``backbone(pixel_values, pixel_mask) -> [(map, mask), ...]``)
  becomes an :class:`IVFeatureAdapter` that runs our IV backbone. The HF model is built from a placeholder ResNet
  config of a few thousand parameters (nothing is downloaded, ``use_pretrained_backbone=False``), which is then
  dropped.
- ``hf.model.encoder_input_proj`` (1x1 conv + BN per level, sized by the backbone in HF's constructor) is rebuilt for
  the IV backbone's channels at strides 8 / 16 / 32 (``config.encoder_in_channels``), with HF's module layout so
  checkpoint keys keep their names.

How VIS and IR reach the backbone: they travel together as the one tensor HF forwards, ``pixel_values =
cat([vis, ir], dim=1)`` (3 + 1 or 3 + 3 channels); the adapter splits it again (VIS is always the first 3 channels).
No state is stashed between calls, so activation checkpointing (the IV backbone's per-block one, or HF's) recomputes
from explicit inputs, and DDP sees one ordinary forward per step.

Where the backbone lives: it is ``RTDETRDetector.backbone``, a direct child, and the adapter only keeps a reference
to it (not a submodule). ivtune's engine puts ``model.backbone`` in one parameter group and every other child in the
head group; a backbone registered inside ``hf`` as well would appear in both groups (torch rejects that) and twice
in checkpoints. ``.to()``, ``.train()`` and ``state_dict()`` therefore go through the detector, not through ``hf``.

Other choices:

- Levels are picked by stride (8 / 16 / 32), not by index: Swin's stages 2-4 (with a trainable per-level LayerNorm,
  as the torchvision ``DetectionModel`` does: timm's Swin has only a final norm), or the ViT / EVA
  pseudo-pyramid's x2 / x1 / x0.5 maps.
- Inputs of any size are padded bottom / right with 0 (the mean colour after normalisation) to a multiple of
  32 (patch 16 and Swin) or of 42 (patch 14: the smallest multiple of the patch >= 32). The encoder's FPN upsamples
  by exactly 2 and concatenates, so the three maps must be exactly 2x apart: a patch-14 pyramid that is a row or
  column off is resized to 4x / 2x the stride-32 map (each map spans the whole padded input, so it stays aligned).
  Boxes are predicted in [0, 1] of the padded input. RT-DETR's encoder and decoder take no padding mask (HF
  ignores the masks the backbone returns; the original code has none), so padding is seen as flat mean-colour
  image; predictions are clipped to each unpadded image.
- The DETR loss has no notion of an ignore region: ``ignore`` boxes are removed from the targets, so they are never
  matched as positives; a query that fires on one is unmatched and, like every unmatched query, gets the no-object
  target of the classification loss (it is not rewarded, and its score is pushed down as background). Ignored regions
  are the evaluator's business.
- Labels are 0-based in and out (sigmoid focal / varifocal classification, no background class).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ...errors import CheckpointMismatchError, ConfigError, InputShapeError
from .detector import PairDetector

logger = logging.getLogger(__name__)

VERSIONS = {"v2": "rtdetr_v2", "v1": "rtdetr_v1"}  # version -> detector_name
FEAT_STRIDES = (8, 16, 32)  # the levels RT-DETR's hybrid encoder takes
MISSING_EXTRA = "model.head 'rtdetr' needs the detr extra: pip install 'ivtune[detr]'"
BACKBONE_PREFIX = "model.backbone."  # RT-DETR's backbone slot in an HF state dict
# set from the constructor's own arguments or by the IV backbone; not accepted in ``config_kwargs``
RESERVED_CONFIG_KEYS = ("backbone_config", "encoder_in_channels", "feat_strides", "num_labels", "id2label",
                        "label2id", "d_model", "encoder_hidden_dim", "decoder_in_channels", "num_feature_levels",
                        "num_queries", "num_denoising", "encoder_layers", "decoder_layers", "use_pretrained_backbone")


def _pad(images: Sequence[torch.Tensor], size: tuple[int, int]) -> torch.Tensor:
    """Stack CHW images into one NCHW batch, zero-padded bottom / right to ``size`` (0 = the mean colour after the
    dataset's normalisation)."""
    return torch.stack([F.pad(x, (0, size[1] - x.shape[-1], 0, size[0] - x.shape[-2])) for x in images])


def _import_hf(version: str) -> dict[str, Any]:
    """transformers' RT-DETR classes for ``version``; imported here, never when ivtune is imported."""
    try:
        import scipy.optimize  # noqa: F401  (HF's Hungarian matcher: linear_sum_assignment)
        from transformers import RTDetrImageProcessor, RTDetrResNetConfig

        if version == "v2":
            from transformers import RTDetrV2Config as Config
            from transformers import RTDetrV2ForObjectDetection as Model
        else:
            from transformers import RTDetrConfig as Config
            from transformers import RTDetrForObjectDetection as Model
    except ImportError as e:
        raise ConfigError(f"{MISSING_EXTRA} ({e})") from e
    return {"config": Config, "model": Model, "processor": RTDetrImageProcessor, "resnet_config": RTDetrResNetConfig}


class _LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channels of an NCHW map (the seg head's ``LayerNorm2d``; merge once it is shared)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.layer_norm(x.permute(0, 2, 3, 1), self.normalized_shape, self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)


def levels_at_strides(strides: Sequence[int], wanted: Sequence[int] = FEAT_STRIDES) -> list[int]:
    """Indices of the backbone levels at ``wanted`` strides (the last one when a stride repeats)."""
    levels = []
    for s in wanted:
        hits = [i for i, t in enumerate(strides) if int(t) == s]
        if not hits:
            raise ConfigError(f"RT-DETR takes backbone levels at strides {list(wanted)}, but this backbone returns "
                              f"strides {list(strides)}. Build it with out_indices that include them (Swin: stages "
                              "1, 2, 3; ViT / EVA: the default four taps).")
        levels.append(hits[-1])
    return levels


class IVFeatureAdapter(nn.Module):
    """Fills RT-DETR's backbone slot: packed ``cat([vis, ir], 1)`` pixels -> ``[(map, mask)]`` at strides 8/16/32.

    Holds a *reference* to the IV backbone (it is registered on :class:`RTDETRDetector`, see the module docstring)
    and, for hierarchical backbones, the trainable per-level LayerNorms.

    Args:
        backbone: the :class:`ivtune.IVBackbone`.
        levels: indices of the backbone levels to return, finest first.
        level_norm: add a trainable LayerNorm over channels on every returned level.
    """

    def __init__(self, backbone: nn.Module, levels: Sequence[int], level_norm: bool) -> None:
        super().__init__()
        object.__setattr__(self, "iv_backbone", backbone)  # plain attribute: nn.Module.__setattr__ would register it
        self.levels = [int(i) for i in levels]
        self.intermediate_channel_sizes = [int(backbone.out_channels[i]) for i in self.levels]  # HF's name
        self.norms = nn.ModuleList(_LayerNorm2d(c) for c in self.intermediate_channel_sizes) if level_norm else None

    def forward(self, pixel_values: torch.Tensor, pixel_mask: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        vis, ir = pixel_values[:, :3], pixel_values[:, 3:]
        maps = self.iv_backbone(vis, ir)
        # the encoder's FPN / PAN need each map exactly 2x the next coarser one; a patch-14 pyramid (ceil(H / s)
        # of an input padded to a multiple of 42) can be a row or column off: bring those to 4x / 2x the
        # stride-32 map. Every map spans the whole padded input, so the resize keeps it aligned with the boxes.
        h, w = maps[self.levels[-1]].shape[-2:]
        out = []
        for k, i in enumerate(self.levels):
            x = maps[i] if self.norms is None else self.norms[k](maps[i])
            size = (h * 2 ** (len(self.levels) - 1 - k), w * 2 ** (len(self.levels) - 1 - k))
            if tuple(x.shape[-2:]) != size:
                x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
            # the valid-pixel mask at this level, as HF's own backbone returns it (the encoder does not read it)
            mask = F.interpolate(pixel_mask[None].float(), size=x.shape[-2:]).to(torch.bool)[0]
            out.append((x, mask))
        return out

    def extra_repr(self) -> str:
        return (f"levels={self.levels}, channels={self.intermediate_channel_sizes}, "
                "backbone=<RTDETRDetector.backbone, referenced, not a submodule>")


def _input_projections(channels: Sequence[int], width: int) -> nn.ModuleList:
    """HF's ``encoder_input_proj`` layout (1x1 conv without bias + BN) for ``channels``, with PyTorch's default init
    (BN weight 1): HF's ``_init_weights`` draws BN weights from N(0, 0.01), which would mute a fresh projection
    in front of an encoder loaded from a COCO checkpoint."""
    return nn.ModuleList(nn.Sequential(nn.Conv2d(int(c), width, kernel_size=1, bias=False), nn.BatchNorm2d(width))
                         for c in channels)


def to_hf_targets(targets: Sequence[dict[str, torch.Tensor]], image_sizes: Sequence[tuple[int, int]],
                  padded_size: tuple[int, int], num_classes: int,
                  device: torch.device | None = None) -> list[dict[str, torch.Tensor]]:
    """ivtune detection targets -> the ``labels`` RT-DETR's loss takes, converted once per batch.

    In: per image ``boxes`` (N, 4) xyxy in input pixels, ``labels`` (N,) 0-based, optional ``ignore`` (N,) bool.
    Out: per image ``class_labels`` (M,) int64 and ``boxes`` (M, 4) as normalised ``(cx, cy, w, h)`` in [0, 1] of the
    padded input (the frame RT-DETR predicts in). Boxes are clipped to their unpadded image; ``ignore`` boxes and
    boxes without area are dropped: the DETR loss has no ignore region, so they are never positives and a query on
    one is trained like any unmatched query (no-object). An image without boxes keeps empty tensors and trains as a
    negative.
    """
    if len(targets) != len(image_sizes):
        raise InputShapeError(f"give one target dict per image, got {len(targets)} targets for {len(image_sizes)} "
                              "images.")
    ph, pw = padded_size
    scale = torch.tensor([pw, ph, pw, ph], dtype=torch.float32)
    out = []
    for t, (h, w) in zip(targets, image_sizes, strict=True):
        boxes = torch.as_tensor(t["boxes"]).reshape(-1, 4).float().cpu()
        labels = torch.as_tensor(t["labels"]).reshape(-1).long().cpu()
        if len(labels) != len(boxes):
            raise InputShapeError(f"a target has {len(boxes)} boxes but {len(labels)} labels.")
        if labels.numel() and (labels.min() < 0 or labels.max() >= num_classes):
            raise InputShapeError(f"labels must be 0-based class indices < {num_classes}, got "
                                  f"{labels.unique().tolist()}.")
        boxes = torch.stack([boxes[:, 0].clamp(0, w), boxes[:, 1].clamp(0, h), boxes[:, 2].clamp(0, w),
                             boxes[:, 3].clamp(0, h)], dim=1)
        keep = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
        if t.get("ignore") is not None:
            keep &= ~torch.as_tensor(t["ignore"]).reshape(-1).bool().cpu()
        b = boxes[keep] / scale
        cxcywh = torch.stack([(b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2, b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]],
                             dim=1)
        out.append({"class_labels": labels[keep].to(device), "boxes": cxcywh.to(device)})
    return out


@dataclass
class WeightsReport:
    """What :meth:`RTDETRDetector.load_detector_weights` did with each key of the file (HF names).

    Attributes:
        loaded: copied into the encoder / decoder / heads.
        skipped_backbone: the file's ``model.backbone.*`` (its CNN); the IV backbone replaces it.
        shape_mismatch: present on both sides with other shapes (input projections for other channels, class heads
            for another class count, and the rest of each such module); they keep the detector's fresh init.
        unexpected: in the file, not in the detector.
        missing: in the detector (outside its backbone slot), not in the file; they keep the fresh init.
        shapes: ``key -> (file shape, detector shape)`` for the mismatched keys.
    """

    loaded: list[str] = field(default_factory=list)
    skipped_backbone: list[str] = field(default_factory=list)
    shape_mismatch: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    shapes: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = field(default_factory=dict)

    def __str__(self) -> str:
        lines = [f"loaded {len(self.loaded)} tensors; skipped {len(self.skipped_backbone)} backbone tensors"]
        for key in self.shape_mismatch:
            got, want = self.shapes.get(key, ((), ()))
            lines.append(f"  shape mismatch (kept fresh init): {key} file {tuple(got)} vs detector {tuple(want)}")
        lines += [f"  unexpected (not loaded): {k}" for k in self.unexpected]
        lines += [f"  missing from the file (kept fresh init): {k}" for k in self.missing]
        lines += [f"  skipped backbone: {k}" for k in self.skipped_backbone]
        return "\n".join(lines)


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise CheckpointMismatchError(f"detector weights file {path} (model.detector_weights) does not exist. A "
                                      "trained run does not need it to evaluate or predict: set "
                                      "model.detector_weights: null.")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(path))
    elif path.suffix in (".bin", ".pth", ".pt"):
        state = torch.load(path, map_location="cpu", weights_only=True)
    else:
        raise CheckpointMismatchError(f"detector weights {path}: expected a .safetensors, .bin, .pth or .pt file.")
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointMismatchError(f"{path} is not a flat state dict of tensors (the format of an HF "
                                      "RTDetr(V2)ForObjectDetection's model.safetensors / pytorch_model.bin).")
    return state


class RTDETRDetector(PairDetector):
    """Object detection on visible + infrared pairs with RT-DETR (Hugging Face transformers) on an IV backbone.

    Same interface as the torchvision-based ``DetectionModel``: ``forward(vis, ir, targets=None)`` returns
    a dict of loss terms in train mode and per image ``{"boxes" (xyxy, input pixels), "scores", "labels"
    (0-based)}`` in eval mode; :meth:`predict`; ``detector_name``; ``backbone``. The backbone's trainability is left
    as built (``build_backbone(method=...)`` decides it); the level norms, input projections, encoder, decoder and
    heads train in full.

    The loss dict is HF's ``loss_dict``: terms already multiplied by their weights (``weight_loss_vfl``,
    ``weight_loss_bbox``, ``weight_loss_giou``), for the last decoder layer (``loss_vfl``, ``loss_bbox``,
    ``loss_giou``), the earlier decoder layers and the encoder's top-k queries (``*_aux_{i}``, the encoder is the last
    ``i``) and the denoising groups of every decoder layer (``*_dn_{i}``, absent when no image of the batch has a
    box). ``sum(losses.values())`` is HF's total loss.

    Args:
        backbone: an :class:`ivtune.IVBackbone` with levels at strides 8, 16 and 32.
        num_classes: object classes (no background class).
        version: ``v2`` (RT-DETRv2: per-level sampling points in the decoder) or ``v1``.
        num_queries: object queries kept by top-k selection from the encoder (300 in the papers).
        d_model: width of the encoder (``encoder_hidden_dim``) and decoder (256 in the papers).
        encoder_layers: transformer layers on the stride-32 map (AIFI; 1 in the papers).
        decoder_layers: decoder layers (6 for R50 / R101, 3-4 for the small models).
        num_denoising: denoising queries per image in training (100; 0 turns denoising off).
        score_thresh: drop detections scoring below this in eval (0.05: low, for mAP).
        detections_per_img: detections kept per image, best first.
        size_divisible: pad the batch to a multiple of this; default 32, or 42 for patch-14 backbones.
        level_norm: trainable per-level LayerNorm on the backbone maps; ``None``: on for hierarchical backbones.
        config_kwargs: further fields of ``RTDetrV2Config`` / ``RTDetrConfig`` (``decoder_ffn_dim``,
            ``encoder_ffn_dim``, ``decoder_n_points``, ``weight_loss_giou``, ``label_noise_ratio``, ...).
    """

    def __init__(
        self,
        backbone: nn.Module,
        *,
        num_classes: int,
        version: str = "v2",
        num_queries: int = 300,
        d_model: int = 256,
        encoder_layers: int = 1,
        decoder_layers: int = 6,
        num_denoising: int = 100,
        score_thresh: float = 0.05,
        detections_per_img: int = 100,
        size_divisible: int | None = None,
        level_norm: bool | None = None,
        config_kwargs: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        if version not in VERSIONS:
            raise ConfigError(f"RT-DETR version must be one of {', '.join(VERSIONS)}, got {version!r}.")
        if not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes < 1:
            raise ConfigError(f"num_classes must be a positive int (object classes, no background), got "
                              f"{num_classes!r}")
        for name, value, low in (("num_queries", num_queries, 1), ("d_model", d_model, 8),
                                 ("encoder_layers", encoder_layers, 0), ("decoder_layers", decoder_layers, 1),
                                 ("num_denoising", num_denoising, 0), ("detections_per_img", detections_per_img, 1)):
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise ConfigError(f"{name} must be an int >= {low}, got {value!r}.")
        for attr in ("out_channels", "strides", "input_multiple"):
            if not hasattr(backbone, attr):
                raise ConfigError(f"backbone {type(backbone).__name__} has no {attr!r}; build it with "
                                  "ivtune.build_backbone.")
        extra = dict(config_kwargs or {})
        reserved = sorted(set(extra) & set(RESERVED_CONFIG_KEYS))
        if reserved:
            raise ConfigError(f"config_kwargs may not set {reserved}: they follow from the backbone or from the "
                              "RTDETRDetector arguments of the same name (num_labels: num_classes).")
        levels = levels_at_strides(backbone.strides)
        multiple = int(backbone.input_multiple)
        # 32 when the patch divides it (the maps are then exactly 2x apart); else the smallest multiple of the patch
        # >= 32 (patch 14: 42, the torchvision heads' choice), the adapter evening out the last row / column
        default_div = 32 if 32 % multiple == 0 else multiple * math.ceil(32 / multiple)
        self.size_divisible = int(size_divisible or default_div)
        if self.size_divisible % default_div:
            raise ConfigError(f"size_divisible {self.size_divisible} must be a multiple of {default_div} (the patch "
                              f"size {multiple}, and 32 or more for the stride-32 map); use {default_div}.")
        if level_norm is None:
            level_norm = bool(getattr(getattr(backbone, "family", None), "hierarchical", False))

        hf = _import_hf(version)  # validated everything above first: a missing extra is the only late error
        known = set(hf["config"]().to_dict())
        unknown = sorted(k for k in extra if k not in known)
        if unknown:
            raise ConfigError(f"unknown {hf['config'].__name__} fields in config_kwargs: {unknown}.")
        channels = [int(backbone.out_channels[i]) for i in levels]
        config = hf["config"](
            # placeholder: HF's constructor builds a CNN from this; it is replaced by the IV backbone at once
            backbone_config=hf["resnet_config"](embedding_size=8, hidden_sizes=[8, 8, 8, 8], depths=[1, 1, 1, 1],
                                                layer_type="basic", out_indices=[2, 3, 4]),
            use_pretrained_backbone=False,
            encoder_in_channels=channels, feat_strides=list(FEAT_STRIDES), num_labels=num_classes,
            d_model=d_model, encoder_hidden_dim=d_model, decoder_in_channels=[d_model] * len(FEAT_STRIDES),
            num_feature_levels=len(FEAT_STRIDES), num_queries=num_queries, num_denoising=num_denoising,
            encoder_layers=encoder_layers, decoder_layers=decoder_layers, **extra)

        self.backbone = backbone
        self.detector_name = VERSIONS[version]
        self.version = version
        self.num_classes = num_classes
        self.levels = levels
        self.score_thresh = float(score_thresh)
        self.detections_per_img = detections_per_img
        model = hf["model"](config)
        model.model.backbone = IVFeatureAdapter(backbone, levels, level_norm)
        model.model.encoder_input_proj = _input_projections(channels, config.encoder_hidden_dim)
        model.requires_grad_(True)
        self.hf = model
        self._processor = hf["processor"]()  # only its post_process_object_detection is used

    # ------------------------------------------------------------------ inputs
    def pack(self, vis: Sequence[torch.Tensor] | torch.Tensor, ir: Sequence[torch.Tensor] | torch.Tensor
             ) -> tuple[torch.Tensor, torch.Tensor, list[tuple[int, int]]]:
        """Pad VIS and IR identically to one size divisible by ``size_divisible`` and pack them for HF.

        Returns:
            ``pixel_values`` = ``cat([vis, ir], 1)`` (B, 3 + C_ir, H, W), ``pixel_mask`` (B, H, W; 1 on image pixels)
            and the unpadded ``(h, w)`` of every image.
        """
        vis, ir, sizes, padded = self.check_pairs(vis, ir, vis_channels=3)
        if len({t.shape[0] for t in ir}) != 1:
            raise InputShapeError(f"all IR images of a batch need the same channel count, got "
                                  f"{[t.shape[0] for t in ir]}.")
        tokens = sum(math.ceil(padded[0] / s) * math.ceil(padded[1] / s) for s in FEAT_STRIDES)
        if tokens < self.hf.config.num_queries:
            raise InputShapeError(f"the padded input {padded[0]}x{padded[1]} gives {tokens} encoder positions at "
                                  f"strides {list(FEAT_STRIDES)}, fewer than num_queries "
                                  f"{self.hf.config.num_queries}; use larger images or fewer queries.")
        pixel_values = torch.cat([_pad(vis, padded), _pad(ir, padded)], dim=1)
        mask = torch.zeros((len(sizes), *padded), dtype=torch.long, device=pixel_values.device)
        for k, (h, w) in enumerate(sizes):
            mask[k, :h, :w] = 1
        return pixel_values, mask, sizes

    # ------------------------------------------------------------------ forward
    def forward(self, vis: Sequence[torch.Tensor] | torch.Tensor, ir: Sequence[torch.Tensor] | torch.Tensor,
                targets: Sequence[dict[str, torch.Tensor]] | None = None):
        """Train mode: a dict of already-weighted loss terms (``targets`` required). Eval mode: per image
        ``{"boxes", "scores", "labels"}``, boxes xyxy in the input tensor's pixels, labels 0-based."""
        pixel_values, pixel_mask, sizes = self.pack(vis, ir)
        if self.training:
            if targets is None:
                raise ConfigError("RTDETRDetector in train mode needs targets; call .eval() to predict.")
            labels = to_hf_targets(targets, sizes, tuple(pixel_values.shape[-2:]), self.num_classes,
                                   pixel_values.device)
            out = self.hf(pixel_values=pixel_values, pixel_mask=pixel_mask, labels=labels)
            parts = dict(out.loss_dict)  # weighted terms; HF's out.loss is their sum
            if not any(len(t["class_labels"]) for t in labels) and self.hf.config.num_denoising > 0:
                # no box in the batch: HF builds no denoising group and its label embedding gets no gradient; a
                # zero term keeps it in the graph, so DDP's default strategy (every parameter reduced every step)
                # runs on batches of negatives too. The loss is unchanged; the embedding's gradient is 0, not None
                # (AdamW still decays it, as it does whenever another rank's batch has boxes)
                first = next(iter(parts))
                parts[first] = parts[first] + 0.0 * self.hf.model.denoising_class_embed.weight.sum()
            return parts
        out = self.hf(pixel_values=pixel_values, pixel_mask=pixel_mask)
        return self.postprocess(out, sizes, tuple(pixel_values.shape[-2:]))

    def postprocess(self, outputs: Any, image_sizes: Sequence[tuple[int, int]], padded_size: tuple[int, int],
                    score_thresh: float | None = None) -> list[dict[str, torch.Tensor]]:
        """HF's ``post_process_object_detection`` (top-k over queries x classes, sigmoid scores above the threshold)
        in padded-input pixels, then each image's boxes clipped to it and empty ones dropped."""
        thresh = self.score_thresh if score_thresh is None else score_thresh
        dets = self._processor.post_process_object_detection(
            outputs, threshold=thresh, target_sizes=[tuple(padded_size)] * len(image_sizes))
        results = []
        for det, (h, w) in zip(dets, image_sizes, strict=True):
            b = det["boxes"]
            b = torch.stack([b[:, 0].clamp(0, w), b[:, 1].clamp(0, h), b[:, 2].clamp(0, w), b[:, 3].clamp(0, h)], 1)
            keep = ((b[:, 2] > b[:, 0]) & (b[:, 3] > b[:, 1])).nonzero().squeeze(1)[: self.detections_per_img]
            results.append({"boxes": b[keep], "scores": det["scores"][keep], "labels": det["labels"][keep].long()})
        return results

    # predict: PairDetector's (one pair or a batch, in eval mode)

    # ------------------------------------------------------------------ weights
    def load_detector_weights(self, path: str | Path) -> WeightsReport:
        """Load an RT-DETR checkpoint (state dict of an HF ``RTDetr(V2)ForObjectDetection``: ``.safetensors``,
        ``.bin``, ``.pth``) into the encoder, decoder and heads; its backbone is skipped.

        The file goes through transformers' own loader first (``from_pretrained(None, config=..., state_dict=...)``,
        into a throwaway model of this configuration), which renames the keys of files written in an older layout
        (the hub's RT-DETR files: ``encoder.encoder.*``, ``fc1``, ``out_proj`` ...) to the current one. Then keys are
        compared by name and shape: a module with any mis-shaped tensor is skipped whole (an input projection for
        another channel count: its BN statistics belong to the skipped conv; class heads for another class count)
        and keeps the detector's fresh initialisation, so call this right after construction. Every key not loaded
        is logged and listed in the returned :class:`WeightsReport`.

        Raises:
            CheckpointMismatchError: unreadable file, or not one encoder / decoder tensor matches.
        """
        path = Path(path)
        raw = _read_state_dict(path)
        from transformers import logging as hf_logging

        verbosity = hf_logging.get_verbosity()
        hf_logging.set_verbosity_error()  # its load table compares against the throwaway model: ours follows
        try:
            ref, info = type(self.hf).from_pretrained(None, config=self.hf.config, state_dict=raw,
                                                      ignore_mismatched_sizes=True, output_loading_info=True)
        finally:
            hf_logging.set_verbosity(verbosity)
        # what the file provided, under current names. Tensors whose shape differed from the throwaway model (its
        # input projections are sized for a placeholder CNN) are taken from the file as is when they kept their name.
        # Tied heads (class_embed <-> model.decoder.class_embed, bbox_embed likewise) share one tensor: judged as one.
        missing_in_ref = set(info["missing_keys"])
        mismatched_in_ref = {k: tuple(got) for k, got, _ in info["mismatched_keys"]}
        ref_state = ref.state_dict()
        aliases: dict[int, list[str]] = {}
        for key, tensor in ref_state.items():
            aliases.setdefault(tensor.data_ptr(), []).append(key)
        from_file: dict[str, torch.Tensor] = {}
        report = WeightsReport(skipped_backbone=sorted(k for k in raw if k.startswith(BACKBONE_PREFIX)))
        own = self.hf.state_dict()
        for key, tensor in ref_state.items():
            if key.startswith(BACKBONE_PREFIX):
                continue
            group = aliases[tensor.data_ptr()]
            file_shape = next((mismatched_in_ref[k] for k in group if k in mismatched_in_ref), None)
            if file_shape is None:
                if not all(k in missing_in_ref for k in group):
                    from_file[key] = tensor
            elif key in raw and tuple(raw[key].shape) == file_shape:
                from_file[key] = raw[key]
            else:  # mis-shaped and renamed on the way, or an alias of such a tensor: report it
                report.shape_mismatch.append(key)
                report.shapes[key] = (file_shape, tuple(own[key].shape) if key in own else ())
        del ref
        report.unexpected = sorted(k for k in info["unexpected_keys"] if not k.startswith(BACKBONE_PREFIX))

        def unit(key: str) -> str:  # the module a tensor belongs to; an input projection (conv + BN) as a whole
            parts = key.split(".")
            return ".".join(parts[:3] if key.startswith("model.encoder_input_proj.") else parts[:-1])

        bad_units = {unit(k) for k, v in from_file.items() if k in own and tuple(v.shape) != tuple(own[k].shape)}
        bad_units |= {unit(k) for k in report.shape_mismatch}
        selected = {}
        for key, tensor in sorted(from_file.items()):
            if key not in own:
                report.unexpected.append(key)
            elif unit(key) in bad_units:
                report.shape_mismatch.append(key)
                report.shapes[key] = (tuple(tensor.shape), tuple(own[key].shape))
            else:
                selected[key] = tensor
        if not selected:
            raise CheckpointMismatchError(
                f"{path} has no tensor of this RT-DETR's encoder or decoder ({len(raw)} keys, e.g. "
                f"{sorted(raw)[:3]}); expected an HF RTDetr(V2)ForObjectDetection state dict.")
        self.hf.load_state_dict(selected, strict=False)
        # an alias of a loaded or mismatched tied tensor is not missing
        seen = {own[k].data_ptr(): k for k in selected}
        skipped = {own[k].data_ptr() for k in report.shape_mismatch if k in own}
        report.loaded = sorted(selected)
        report.shape_mismatch = sorted(set(report.shape_mismatch))
        report.unexpected = sorted(set(report.unexpected))
        report.missing = sorted(k for k, v in own.items() if not k.startswith(BACKBONE_PREFIX) and k not in selected
                                and k not in report.shapes and v.data_ptr() not in seen
                                and v.data_ptr() not in skipped)
        clean = not (report.shape_mismatch or report.unexpected or report.missing)
        (logger.info if clean else logger.warning)("RT-DETR weights from %s: %s", path, report)
        return report
