"""``SegmentationModel``: IV backbone -> (per-level LayerNorm neck) -> segmentation head -> full-size logits.

docs/METHOD.md section 9.2 (head and loss) and section 8 (the trainable per-level LayerNorm for hierarchical backbones).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ...backbones.neck import LevelNorms, wants_level_norm
from ...errors import ConfigError, InputShapeError
from .decoder import build_seg_head, resize_to
from .metrics import check_ignore_index


class SegmentationModel(nn.Module):
    """Semantic segmentation on a visible + infrared pair.

    The backbone's trainability is left exactly as built (``build_backbone(method=...)`` decides it); the neck and
    head are made fully trainable.

    Args:
        backbone: an :class:`ivtune.IVBackbone` (or any module with ``forward(vis, ir) -> list[Tensor]`` and
            ``out_channels``).
        head: a name in :data:`SEG_HEADS` (``segformer``, ``upernet``) or a ready head module taking the list of
            maps.
        num_classes: number of classes ``K``. Required with a head name; with a head module it defaults to the
            module's ``num_classes``.
        ignore_index: mask value excluded from the loss (and from metrics).
        head_kwargs: extra arguments of the named head (``embed_dim``, ``channels``, ``dropout``, ...).
        level_norm: put a trainable LayerNorm over channels on every level before the head. ``None``: on for
            hierarchical backbones (Swin, whose stage outputs have no final norm; docs/METHOD.md 8), off otherwise
            (the ViT/EVA taps share one width and scale).
    """

    def __init__(
        self,
        backbone: nn.Module,
        head: str | nn.Module = "segformer",
        *,
        num_classes: int | None = None,
        ignore_index: int = 255,
        head_kwargs: dict[str, Any] | None = None,
        level_norm: bool | None = None,
    ) -> None:
        super().__init__()
        out_channels = getattr(backbone, "out_channels", None)
        if not isinstance(out_channels, (list, tuple)) or not out_channels:
            raise ConfigError(
                f"backbone {type(backbone).__name__} has no out_channels list; build it with ivtune.build_backbone."
            )
        if isinstance(head, nn.Module):
            if head_kwargs:
                raise ConfigError(f"head_kwargs {sorted(head_kwargs)} only apply to a head given by name.")
            head_classes = getattr(head, "num_classes", None)
            if num_classes is None:
                num_classes = head_classes
            if num_classes is None:
                raise ConfigError(f"pass num_classes: the head {type(head).__name__} has no num_classes attribute.")
            if head_classes is not None and head_classes != num_classes:
                raise ConfigError(f"num_classes={num_classes} but the head {type(head).__name__} has {head_classes}.")
        elif isinstance(head, str):
            if num_classes is None:
                raise ConfigError(f"num_classes is required to build the {head!r} head.")
            head = build_seg_head(head, list(out_channels), num_classes, **(head_kwargs or {}))
        else:
            raise ConfigError(f"head must be a head name or an nn.Module, got {type(head).__name__}.")
        if not isinstance(ignore_index, int) or isinstance(ignore_index, bool):
            raise ConfigError(f"ignore_index must be an int, got {ignore_index!r}.")
        check_ignore_index(ignore_index, num_classes)

        self.backbone = backbone
        self.num_classes = int(num_classes)
        self.ignore_index = ignore_index
        # the neck and head train in full; the backbone's own flags (frozen or not) stay as the method set them
        self.neck = LevelNorms(out_channels) if wants_level_norm(backbone, level_norm) else None
        self.head = head.requires_grad_(True)

    def forward_features(self, vis: torch.Tensor, ir: torch.Tensor) -> list[torch.Tensor]:
        """The multi-scale maps the head sees (after the level norms, if any)."""
        feats = list(self.backbone(vis, ir))
        return self.neck(feats) if self.neck is not None else feats

    def forward(self, vis: torch.Tensor, ir: torch.Tensor) -> torch.Tensor:
        """vis: (B, 3, H, W), ir: (B, 1 or 3, H, W) -> logits (B, K, H, W) at the input size."""
        return resize_to(self.head(self.forward_features(vis, ir)), vis.shape[-2:])

    def loss(self, logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Cross-entropy averaged over the pixels whose mask is not ``ignore_index``.

        A batch whose pixels are all ignored gives 0 (with a graph), not PyTorch's NaN from 0 / 0, so one
        unlabelled crop cannot poison a run.

        Args:
            logits: (B, K, H, W) from :meth:`forward`.
            mask: (B, H, W) integer class indices, ``ignore_index`` where unlabelled.
        """
        if logits.ndim != 4 or logits.shape[1] != self.num_classes:
            raise InputShapeError(
                f"logits must be (B, {self.num_classes}, H, W), got {tuple(logits.shape)}. Pass the output of "
                "forward()."
            )
        if mask.ndim != 3 or mask.shape[0] != logits.shape[0] or mask.shape[-2:] != logits.shape[-2:]:
            raise InputShapeError(
                f"mask must be (B, H, W) = {(logits.shape[0], *logits.shape[-2:])} to match logits "
                f"{tuple(logits.shape)}, got {tuple(mask.shape)}. Drop a channel dimension with mask[:, 0] or "
                "resize the mask (nearest) to the input size."
            )
        if mask.is_floating_point() or mask.dtype == torch.bool:
            raise InputShapeError(f"mask must hold integer class indices, got {mask.dtype}. Use mask.long().")
        mask = mask.long()
        bad = (mask != self.ignore_index) & ((mask < 0) | (mask >= self.num_classes))
        if bool(bad.any()):
            values = torch.unique(mask[bad])[:10].tolist()
            raise InputShapeError(
                f"mask has values {values} outside [0, {self.num_classes}) that are not ignore_index "
                f"({self.ignore_index}). Map them to ignore_index or check num_classes."
            )
        total = F.cross_entropy(logits, mask, ignore_index=self.ignore_index, reduction="sum")
        count = (mask != self.ignore_index).sum().clamp_min(1)
        return total / count

    @torch.no_grad()
    def predict(self, vis: torch.Tensor, ir: torch.Tensor) -> torch.Tensor:
        """Class indices (B, H, W) as int64; runs in eval mode (no dropout, BN running stats) and restores the mode."""
        was_training = self.training
        self.eval()
        try:
            return self(vis, ir).argmax(dim=1)
        finally:
            self.train(was_training)
