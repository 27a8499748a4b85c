"""``SaliencyModel``: IV backbone -> (per-level LayerNorm for Swin) -> CPNet-style decoder -> 4 saliency logit maps.

docs/METHOD.md 9.1: the loss is the sum over the four deep-supervision outputs of binary cross-entropy and an IoU
loss, with equal weights; the prediction is the sigmoid of the first (final) output.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ...backbones.neck import LevelNorms, wants_level_norm
from ...errors import ConfigError, InputShapeError
from .decoder import CPDecoder


def iou_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``1 - (sum(p g) + 1) / (sum(p + g) - sum(p g) + 1)`` with ``p = sigmoid(logits)``, per image, averaged."""
    p = torch.sigmoid(logits).flatten(1)
    g = target.flatten(1)
    inter = (p * g).sum(1)
    union = (p + g).sum(1) - inter
    return (1.0 - (inter + 1.0) / (union + 1.0)).mean()


class SaliencyModel(nn.Module):
    """RGB-T salient object detection on a visible + infrared pair.

    The backbone's trainability is left as built (``build_backbone(method=...)`` decides it); the neck and decoder
    train in full.

    Args:
        backbone: an :class:`ivtune.IVBackbone` (``forward(vis, ir) -> 4 maps``, ``out_channels``).
        decoder_kwargs: arguments of :class:`CPDecoder` (``widths``, ``final_width``, ``layer_scale``).
        level_norm: a trainable LayerNorm over channels on every level before the decoder. ``None``: on for
            hierarchical backbones (Swin stage outputs have no norm; docs/METHOD.md section 8), off for ViT / EVA.
    """

    def __init__(self, backbone: nn.Module, decoder_kwargs: dict[str, Any] | None = None,
                 level_norm: bool | None = None) -> None:
        super().__init__()
        out_channels = getattr(backbone, "out_channels", None)
        if not isinstance(out_channels, (list, tuple)) or not out_channels:
            raise ConfigError(
                f"backbone {type(backbone).__name__} has no out_channels list; build it with ivtune.build_backbone."
            )
        try:
            decoder = CPDecoder(list(out_channels), **(decoder_kwargs or {}))
        except TypeError as e:
            raise ConfigError(f"bad model.head_kwargs for the SOD decoder: {e}. Accepted: widths, final_width, "
                              "layer_scale.") from None
        self.backbone = backbone
        self.neck = LevelNorms(out_channels) if wants_level_norm(backbone, level_norm) else None
        self.decoder = decoder.requires_grad_(True)

    def forward(self, vis: torch.Tensor, ir: torch.Tensor) -> list[torch.Tensor]:
        """vis (B, 3, H, W), ir (B, 1 or 3, H, W) -> ``[y1, y2, y3, y4]``, each (B, 1, H, W) logits; y1 is final."""
        feats = list(self.backbone(vis, ir))
        return self.decoder(self.neck(feats) if self.neck is not None else feats, vis.shape[-2:])

    def loss(self, outputs: list[torch.Tensor], mask: torch.Tensor) -> torch.Tensor:
        """Sum over the outputs of BCE-with-logits (pixel mean) + IoU loss (per-image mean).

        Args:
            outputs: the list from :meth:`forward`.
            mask: (B, 1, H, W) float in {0, 1} (a (B, H, W) mask is accepted too).
        """
        if mask.ndim == 3:
            mask = mask[:, None]
        mask = mask.to(outputs[0].dtype) if mask.is_floating_point() else mask.float()
        total = outputs[0].new_zeros(())
        for y in outputs:
            if y.shape != mask.shape:
                raise InputShapeError(f"saliency output {tuple(y.shape)} and mask {tuple(mask.shape)} differ; the "
                                      "mask must be (B, 1, H, W) at the input size.")
            total = total + F.binary_cross_entropy_with_logits(y.float(), mask.float()) + iou_loss(y.float(),
                                                                                                   mask.float())
        return total

    @torch.no_grad()
    def predict(self, vis: torch.Tensor, ir: torch.Tensor) -> torch.Tensor:
        """Saliency in [0, 1], (B, 1, H, W): the sigmoid of the final output, in eval mode (mode restored)."""
        was_training = self.training
        self.eval()
        try:
            return torch.sigmoid(self(vis, ir)[0])
        finally:
            self.train(was_training)
