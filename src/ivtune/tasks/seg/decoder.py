"""Semantic segmentation decoders over a 4-level feature pyramid (strides 4/8/16/32), docs/METHOD.md section 9.2.

- :class:`SegFormerHead`: the all-MLP decoder of SegFormer (Xie et al., NeurIPS 2021), the head the IV-tuning
  authors report for Swin-L and EVA-02-L.
- :class:`UperNetHead`: UPerNet (Xiao et al., ECCV 2018): a pyramid pooling module (PSPNet, Zhao et al., CVPR 2017)
  on the coarsest level, an FPN top-down path, and a fusion of every level at stride 4.

Both take ``list[Tensor]`` of NCHW maps, finest first, and return logits at the finest level's size. They make no
assumption about square or power-of-two sizes: every resize goes to the exact size of its target map.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ...errors import ConfigError, InputShapeError


def resize_to(x: torch.Tensor, size: tuple[int, int] | torch.Size) -> torch.Tensor:
    """Bilinear resize of an NCHW map to exactly ``size`` (no-op when it already has it).

    ``align_corners=False`` with an explicit size (never a scale factor) keeps odd sizes such as 15x20 -> 30x40 or
    7x9 -> 14x18 exact, where ``scale_factor=2`` would be right only by luck of the rounding.

    A size taken from ``other.shape[-2:]`` stays symbolic while ``torch.export`` traces (``int()`` would fix the
    traced size into the graph), so ``ivtune export --dynamic`` keeps height and width free.
    """
    size = tuple(s if isinstance(s, torch.SymInt) else int(s) for s in size[:2])
    if x.shape[-2] == size[0] and x.shape[-1] == size[1]:
        return x
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


class ConvBNReLU(nn.Sequential):
    """Conv (no bias: the BatchNorm's shift replaces it) -> BatchNorm -> ReLU, 'same' padding."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 1) -> None:
        super().__init__(
            nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )


def _check_config(in_channels: Sequence[int], num_classes: int, **widths: int) -> list[int]:
    """Validate head arguments before building anything; returns ``in_channels`` as a list of ints."""
    chans = list(in_channels) if isinstance(in_channels, (list, tuple)) else None
    if not chans or any(not isinstance(c, int) or isinstance(c, bool) or c <= 0 for c in chans):
        raise ConfigError(
            f"in_channels must be a non-empty list of positive ints (one per feature level), got {in_channels!r}. "
            "Pass backbone.out_channels."
        )
    if not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes < 1:
        raise ConfigError(f"num_classes must be a positive int, got {num_classes!r}.")
    for key, value in widths.items():
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ConfigError(f"{key} must be a positive int, got {value!r}.")
    return chans


def _check_dropout(dropout: float) -> float:
    if not 0.0 <= float(dropout) < 1.0:
        raise ConfigError(f"dropout must be in [0, 1), got {dropout!r}.")
    return float(dropout)


def check_features(features: Sequence[torch.Tensor], in_channels: list[int], head: str) -> None:
    """Raise :class:`InputShapeError` when ``features`` does not match the channels the head was built for."""
    if not isinstance(features, (list, tuple)) or len(features) != len(in_channels):
        n = len(features) if isinstance(features, (list, tuple)) else type(features).__name__
        raise InputShapeError(
            f"{head} was built for {len(in_channels)} feature levels (in_channels={in_channels}), got {n}. "
            "Build the head with in_channels=backbone.out_channels."
        )
    for i, (f, c) in enumerate(zip(features, in_channels, strict=True)):
        if f.ndim != 4 or f.shape[1] != c:
            raise InputShapeError(
                f"{head} level {i} expects an NCHW map with {c} channels, got shape {tuple(f.shape)}. "
                "Build the head with in_channels=backbone.out_channels."
            )


class SegFormerHead(nn.Module):
    """SegFormer's all-MLP decoder.

    Per level a 1x1 projection (a per-pixel linear layer) to ``embed_dim``; every level upsampled bilinearly to the
    first (finest, stride-4) level's size; concatenation; 1x1 fuse conv + BN + ReLU; dropout; 1x1 classifier.

    Args:
        in_channels: channels of each input level, finest first (``backbone.out_channels``).
        num_classes: number of output classes ``K``.
        embed_dim: the decoder width ``E`` (256 is mmseg's default for small backbones, 768 for large ones).
        dropout: channel dropout (``Dropout2d``, as SegFormer) before the classifier.
    """

    def __init__(self, in_channels: list[int], num_classes: int, embed_dim: int = 256, dropout: float = 0.1) -> None:
        super().__init__()
        self.in_channels = _check_config(in_channels, num_classes, embed_dim=embed_dim)
        self.num_classes = num_classes
        self.embed_dim = embed_dim
        # a 1x1 conv with bias is exactly the paper's per-token Linear, without the NCHW <-> NLC round trip
        self.proj = nn.ModuleList(nn.Conv2d(c, embed_dim, 1) for c in self.in_channels)
        self.fuse = ConvBNReLU(embed_dim * len(self.in_channels), embed_dim, 1)
        self.dropout = nn.Dropout2d(_check_dropout(dropout))
        self.classifier = nn.Conv2d(embed_dim, num_classes, 1)

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        """features: NCHW maps, finest first -> logits (B, K, H0, W0) at the first map's size."""
        check_features(features, self.in_channels, type(self).__name__)
        size = features[0].shape[-2:]
        # project before upsampling: resizing E channels is cheaper than resizing the (often wider) inputs
        x = torch.cat([resize_to(proj(f), size) for proj, f in zip(self.proj, features, strict=True)], dim=1)
        return self.classifier(self.dropout(self.fuse(x)))


class PyramidPooling(nn.Module):
    """PSPNet's pyramid pooling module: pooled context at several grid sizes, upsampled and fused with the input.

    Args:
        in_channels: channels of the input map.
        channels: width of every pooled branch and of the output.
        pool_scales: output grid sizes of the adaptive average pools.
    """

    def __init__(self, in_channels: int, channels: int, pool_scales: Sequence[int]) -> None:
        super().__init__()
        self.pool_scales = tuple(pool_scales)
        self.branches = nn.ModuleList(
            nn.Sequential(nn.AdaptiveAvgPool2d(s), ConvBNReLU(in_channels, channels, 1)) for s in self.pool_scales
        )
        self.bottleneck = ConvBNReLU(in_channels + channels * len(self.pool_scales), channels, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and x.shape[0] == 1 and 1 in self.pool_scales:
            # BatchNorm over a (1, C, 1, 1) map has one value per channel and fails with a cryptic message
            raise InputShapeError(
                f"UperNetHead's pool scale 1 gives a 1x1 map; with batch size 1 (input {tuple(x.shape)}) its "
                "BatchNorm cannot train. Use a batch size >= 2, call .eval(), or drop 1 from pool_scales."
            )
        size = x.shape[-2:]
        pooled = [resize_to(branch(x), size) for branch in self.branches]
        return self.bottleneck(torch.cat([x, *pooled], dim=1))


class UperNetHead(nn.Module):
    """UPerNet decoder: PPM on the coarsest level, FPN top-down path, fusion of all levels at the finest size.

    Laterals are 1x1 conv-BN-ReLU to ``channels`` (the coarsest level's lateral is the PPM output); the top-down
    path adds each upsampled coarser lateral to the next finer one; 3x3 conv-BN-ReLU smooth every level but the
    coarsest; all levels are upsampled to the finest size, concatenated and fused by a 3x3 conv-BN-ReLU, then
    dropout and a 1x1 classifier.

    Args:
        in_channels: channels of each input level, finest first (``backbone.out_channels``).
        num_classes: number of output classes ``K``.
        channels: the decoder width.
        pool_scales: grid sizes of the pyramid pooling module.
        dropout: channel dropout (``Dropout2d``) before the classifier.
    """

    def __init__(
        self,
        in_channels: list[int],
        num_classes: int,
        channels: int = 256,
        pool_scales: Sequence[int] = (1, 2, 3, 6),
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        self.in_channels = _check_config(in_channels, num_classes, channels=channels)
        scales = list(pool_scales) if isinstance(pool_scales, (list, tuple)) else None
        if not scales or any(not isinstance(s, int) or isinstance(s, bool) or s < 1 for s in scales):
            raise ConfigError(f"pool_scales must be a non-empty list of positive ints, got {pool_scales!r}.")
        self.num_classes = num_classes
        self.channels = channels
        self.ppm = PyramidPooling(self.in_channels[-1], channels, scales)
        self.lateral = nn.ModuleList(ConvBNReLU(c, channels, 1) for c in self.in_channels[:-1])
        self.fpn = nn.ModuleList(ConvBNReLU(channels, channels, 3) for _ in self.in_channels[:-1])
        self.fuse = ConvBNReLU(channels * len(self.in_channels), channels, 3)
        self.dropout = nn.Dropout2d(_check_dropout(dropout))
        self.classifier = nn.Conv2d(channels, num_classes, 1)

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        """features: NCHW maps, finest first -> logits (B, K, H0, W0) at the first map's size."""
        check_features(features, self.in_channels, type(self).__name__)
        laterals = [lat(f) for lat, f in zip(self.lateral, features[:-1], strict=True)]
        laterals.append(self.ppm(features[-1]))
        # top-down: coarse context flows into every finer level; resize to the exact finer size (15x20 -> 30x40)
        for i in range(len(laterals) - 1, 0, -1):
            laterals[i - 1] = laterals[i - 1] + resize_to(laterals[i], laterals[i - 1].shape[-2:])
        outs = [conv(lat) for conv, lat in zip(self.fpn, laterals[:-1], strict=True)]
        outs.append(laterals[-1])  # the PPM output is already smoothed by its 3x3 bottleneck
        size = outs[0].shape[-2:]
        x = self.fuse(torch.cat([resize_to(o, size) for o in outs], dim=1))
        return self.classifier(self.dropout(x))


SEG_HEADS: dict[str, type[nn.Module]] = {"segformer": SegFormerHead, "upernet": UperNetHead}


def build_seg_head(name: str, in_channels: list[int], num_classes: int, **kwargs: Any) -> nn.Module:
    """Build a segmentation head from :data:`SEG_HEADS` by name.

    Args:
        name: ``segformer`` or ``upernet``.
        in_channels: channels of each input level, finest first (``backbone.out_channels``).
        num_classes: number of output classes.
        **kwargs: the head's own arguments (``embed_dim``, ``channels``, ``pool_scales``, ``dropout``).

    Returns:
        The head module.
    """
    if name not in SEG_HEADS:
        raise ConfigError(f"unknown segmentation head {name!r}. Available: {', '.join(sorted(SEG_HEADS))}.")
    try:
        return SEG_HEADS[name](in_channels, num_classes, **kwargs)
    except TypeError as e:  # an unknown keyword: say which head and which keywords it did get
        raise ConfigError(f"bad arguments {sorted(kwargs)} for segmentation head {name!r}: {e}") from e
