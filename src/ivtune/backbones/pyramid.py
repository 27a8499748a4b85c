"""Parameter-free pseudo-pyramid for plain ViT/EVA: four taps resized x4 / x2 / x1 / x0.5 (docs/METHOD.md section 8)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

PYRAMID_STRIDES = (4, 8, 16, 32)


class SimplePyramid(nn.Module):
    """Bilinearly resizes each tap to the exact standard-stride size ``ceil(H/s) x ceil(W/s)``.

    Exact sizes (not ``patch * scale``) keep strides 4/8/16/32 for patch-14 models too, so heads can assume them.
    """

    def __init__(self, strides: tuple[int, ...] = PYRAMID_STRIDES) -> None:
        super().__init__()
        self.strides = tuple(strides)

    def forward(self, taps: list[torch.Tensor], image_hw: tuple[int, int]) -> list[torch.Tensor]:
        outs = []
        for tap, s in zip(taps, self.strides, strict=True):
            size = (math.ceil(image_hw[0] / s), math.ceil(image_hw[1] / s))
            outs.append(tap if tuple(tap.shape[-2:]) == size else F.interpolate(
                tap, size=size, mode="bilinear", align_corners=False))
        return outs
