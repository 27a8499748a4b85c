"""Small pieces every dense head puts beside the backbone: a per-level LayerNorm and input padding.

``LayerNorm2d`` is the trainable per-level norm of docs/METHOD.md section 8 (timm's Swin has no per-stage output
norm; the authors' detector had one per level). ``pad_to_multiple`` makes an image fit the patch grid the backbone
requires (``IVBackbone.input_multiple``) without resizing it.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import InputShapeError


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channels of an NCHW map (each pixel normalised on its own).

    Same parameters as ``nn.LayerNorm(num_channels)``; only the layout differs.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.permute(0, 2, 3, 1)  # NHWC: F.layer_norm normalises the trailing dimension
        x = F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)


def pad_to_multiple(x: torch.Tensor, multiple: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """Zero-pad the bottom and right of ``x`` so height and width are multiples of ``multiple``.

    Args:
        x: (..., H, W) tensor. Pad after normalisation, so the zeros are the mean colour.
        multiple: usually the backbone's ``input_multiple`` (its patch size).

    Returns:
        The padded tensor (``x`` itself when nothing is needed) and the original ``(H, W)``, to crop outputs back
        (``y[..., :h, :w]``).
    """
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    return (F.pad(x, (0, pw, 0, ph)) if ph or pw else x), (h, w)


def wants_level_norm(backbone: nn.Module, level_norm: bool | None) -> bool:
    """``level_norm``, or when None: on for hierarchical backbones (Swin stage outputs have no norm of their own;
    docs/METHOD.md section 8), off for ViT / EVA, whose taps are already normalised."""
    if level_norm is not None:
        return bool(level_norm)
    return bool(getattr(getattr(backbone, "family", None), "hierarchical", False))


class LevelNorms(nn.ModuleList):
    """One trainable :class:`LayerNorm2d` per backbone level, applied level by level.

    A ``ModuleList`` (state-dict keys ``0.weight``, ``1.weight`` ...), so heads that held a plain list of norms keep
    their checkpoint keys.
    """

    def __init__(self, channels: Sequence[int]) -> None:
        super().__init__(LayerNorm2d(int(c)) for c in channels)

    def forward(self, feats: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        if len(feats) != len(self):
            raise InputShapeError(f"the backbone returned {len(feats)} maps but there are {len(self)} level norms "
                                  f"(channels {[n.normalized_shape[0] for n in self]}).")
        return [norm(f) for norm, f in zip(self, feats, strict=True)]

