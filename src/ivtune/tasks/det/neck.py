"""The detection neck: the IV backbone's four maps -> an FPN with the extra levels the detector expects.

Swin stage outputs get a trainable per-level LayerNorm first (timm's Swin has only a final norm; docs/METHOD.md 8).
The ViT / EVA pseudo-pyramid (x4 / x2 / x1 / x0.5 of one width) is already a simple feature pyramid, so the same
torchvision :class:`~torchvision.ops.FeaturePyramidNetwork` projects it; nothing else differs between families.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import torch
from torch import nn
from torchvision.ops import FeaturePyramidNetwork
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool, LastLevelP6P7

from ...backbones.neck import LayerNorm2d
from ...errors import ConfigError

EXTRA_LEVELS = ("p6p7", "maxpool", "none")


class DetNeck(nn.Module):
    """Backbone maps -> ``OrderedDict`` of FPN maps named ``"0"``, ``"1"``, ... plus the extra levels.

    Args:
        in_channels: channels of every backbone level (``backbone.out_channels``).
        in_strides: strides of every backbone level (``backbone.strides``).
        levels: indices of the backbone levels fed to the FPN (e.g. ``(1, 2, 3)``: strides 8 / 16 / 32).
        out_channels: FPN width.
        extra: ``p6p7`` (FCOS / RetinaNet: two stride-2 convs on P5 -> strides 64, 128), ``maxpool`` (Faster R-CNN:
            a stride-2 max pool of the last level, named ``pool``) or ``none``.
        level_norm: a trainable LayerNorm over channels on every used level before the FPN.
    """

    def __init__(
        self,
        in_channels: Sequence[int],
        in_strides: Sequence[int],
        levels: Sequence[int],
        out_channels: int = 256,
        extra: str = "p6p7",
        level_norm: bool = False,
    ) -> None:
        super().__init__()
        n = len(in_channels)
        levels = [int(i) for i in levels]
        if not levels or any(not 0 <= i < n for i in levels) or levels != sorted(set(levels)):
            raise ConfigError(f"neck levels {levels} must be increasing indices of the backbone's {n} levels "
                              f"(strides {list(in_strides)}), e.g. {list(range(max(0, n - 3), n))}.")
        if extra not in EXTRA_LEVELS:
            raise ConfigError(f"extra FPN levels must be one of {', '.join(EXTRA_LEVELS)}, got {extra!r}.")
        self.levels = levels
        chans = [int(in_channels[i]) for i in levels]
        self.norms = nn.ModuleList([LayerNorm2d(c) for c in chans]) if level_norm else None
        blocks = {"p6p7": lambda: LastLevelP6P7(out_channels, out_channels), "maxpool": LastLevelMaxPool,
                  "none": lambda: None}
        self.fpn = FeaturePyramidNetwork(chans, out_channels, extra_blocks=blocks[extra]())
        self.out_channels = out_channels
        base = [int(in_strides[i]) for i in levels]
        more = {"p6p7": [base[-1] * 2, base[-1] * 4], "maxpool": [base[-1] * 2], "none": []}[extra]
        self.strides = base + more  # nominal strides of the outputs, in order

    def forward(self, feats: Sequence[torch.Tensor]) -> OrderedDict[str, torch.Tensor]:
        picked = [feats[i] for i in self.levels]
        if self.norms is not None:
            picked = [norm(x) for norm, x in zip(self.norms, picked, strict=True)]
        return self.fpn(OrderedDict((str(k), x) for k, x in enumerate(picked)))
