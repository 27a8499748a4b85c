"""CPNet-style progressive saliency decoder with four deep-supervision outputs (docs/METHOD.md section 9.1).

Cross-modal fusion happens inside the IV backbone, so the decoder takes one multi-scale pyramid. From the coarsest
level ``f1`` (/32) to the finest ``f4`` (/4), each step upsamples the running map, concatenates the next level and
refines it::

    d1 = Up(CBG(f1))                         768 ch, /16
    d2 = FA_384(Up(CBG([d1, f2])))           384 ch, /8
    d3 = FA_192(Up(CBG([d2, f3])))           192 ch, /4
    d4 = FA_96 (Up(CBG([d3, f4])))            96 ch, /2
    y1 = Conv3(Up(CBG_48(d4)))               the final map, input size
    y2, y3, y4 = Conv3(d3), Conv3(d2), Conv3(d1), upsampled to the input size

``CBG`` is a 3x3 convolution without bias + BatchNorm + GELU, ``FA_d`` a ConvNeXt block, ``Up`` bilinear with
``align_corners=True`` to the size of the next level (x2 when the input is a multiple of 32). With the default
widths the decoder has exactly 19,228,372 parameters on Swin-L and 18,398,932 on EVA-02-L, the authors' counts.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ...errors import ConfigError, InputShapeError


def up_to(x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Bilinear resize with ``align_corners=True`` (the authors' ``Up2`` when ``size`` is twice the input)."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=True)


class ConvBNGELU(nn.Sequential):
    """``CBG``: 3x3 convolution (no bias) -> BatchNorm -> GELU."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(
            nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.GELU(),
        )


class ConvNeXtBlock(nn.Module):
    """``FA_d``: depth-wise 7x7 -> LayerNorm -> Linear d->4d -> GELU -> Linear 4d->d -> layer scale -> residual."""

    def __init__(self, dim: int, layer_scale: float = 1e-6) -> None:
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, 7, padding=3, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.pwconv1 = nn.Linear(dim, 4 * dim)
        self.act = nn.GELU()
        self.pwconv2 = nn.Linear(4 * dim, dim)
        self.gamma = nn.Parameter(torch.full((dim,), float(layer_scale)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.dwconv(x).permute(0, 2, 3, 1)  # NHWC: LayerNorm and Linear act on the channels
        y = self.pwconv2(self.act(self.pwconv1(self.norm(y)))) * self.gamma
        return x + y.permute(0, 3, 1, 2)


class CPDecoder(nn.Module):
    """The progressive decoder; see the module docstring.

    Args:
        in_channels: channels of the backbone maps, finest first (strides 4, 8, 16, 32), as
            ``IVBackbone.out_channels`` gives them (Swin-L ``[192, 384, 768, 1536]``, EVA-02-L ``[1024] * 4``).
        widths: widths of ``d1 .. d4``; the authors' ``(768, 384, 192, 96)``.
        final_width: width of the last CBG before ``y1`` (48).
        layer_scale: initial ConvNeXt layer scale.
    """

    def __init__(
        self,
        in_channels: Sequence[int],
        widths: Sequence[int] = (768, 384, 192, 96),
        final_width: int = 48,
        layer_scale: float = 1e-6,
    ) -> None:
        super().__init__()
        if len(in_channels) != 4:
            raise ConfigError(f"the SOD decoder needs 4 backbone levels (strides 4/8/16/32), got in_channels "
                              f"{list(in_channels)}; leave model.out_indices null or give 4 indices.")
        if len(widths) != 4 or min(widths) <= 0 or final_width <= 0:
            raise ConfigError(f"widths must be 4 positive ints and final_width positive, got {list(widths)}, "
                              f"{final_width}.")
        c4, c3, c2, c1 = (int(c) for c in in_channels)  # c1 is the coarsest (/32), as in METHOD.md 9.1
        w1, w2, w3, w4 = (int(w) for w in widths)
        self.in_channels = [c4, c3, c2, c1]
        self.cbg1 = ConvBNGELU(c1, w1)
        self.cbg2 = ConvBNGELU(w1 + c2, w2)
        self.fa2 = ConvNeXtBlock(w2, layer_scale)
        self.cbg3 = ConvBNGELU(w2 + c3, w3)
        self.fa3 = ConvNeXtBlock(w3, layer_scale)
        self.cbg4 = ConvBNGELU(w3 + c4, w4)
        self.fa4 = ConvNeXtBlock(w4, layer_scale)
        self.cbg5 = ConvBNGELU(w4, final_width)
        self.pred1 = nn.Conv2d(final_width, 1, 3, padding=1)
        self.pred2 = nn.Conv2d(w3, 1, 3, padding=1)
        self.pred3 = nn.Conv2d(w2, 1, 3, padding=1)
        self.pred4 = nn.Conv2d(w1, 1, 3, padding=1)

    def forward(self, feats: Sequence[torch.Tensor], size: Sequence[int]) -> list[torch.Tensor]:
        """Maps (finest first) -> ``[y1, y2, y3, y4]`` logits (B, 1, *size); ``y1`` is the final prediction."""
        if len(feats) != 4:
            raise InputShapeError(f"expected 4 feature maps (strides 4/8/16/32), got {len(feats)}.")
        f4, f3, f2, f1 = feats
        got = [f.shape[1] for f in feats]
        if got != self.in_channels:
            raise InputShapeError(f"feature channels {got} do not match the decoder's in_channels {self.in_channels}.")
        d1 = up_to(self.cbg1(f1), f2.shape[-2:])
        d2 = self.fa2(up_to(self.cbg2(torch.cat([d1, f2], 1)), f3.shape[-2:]))
        d3 = self.fa3(up_to(self.cbg3(torch.cat([d2, f3], 1)), f4.shape[-2:]))
        half = (-(-size[0] // 2), -(-size[1] // 2))
        d4 = self.fa4(up_to(self.cbg4(torch.cat([d3, f4], 1)), half))
        y1 = self.pred1(up_to(self.cbg5(d4), size))
        y2, y3, y4 = (up_to(head(d), size) for head, d in ((self.pred2, d3), (self.pred3, d2), (self.pred4, d1)))
        return [y1, y2, y3, y4]
