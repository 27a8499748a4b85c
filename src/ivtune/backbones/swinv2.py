"""The Swin V2 family (timm ``SwinTransformerV2``), docs/METHOD.md sections 4.2, 4.4 and 8.

Swin V2 (Liu et al., CVPR 2022, arXiv 2111.09883) keeps Swin's stages, patch merging and shifted windows but
moves the norms after the branches (res-post-norm: ``x + DP(LN(Attn(x)))``) and attends with scaled cosine
similarity and a continuous position bias. Only the residual structure matters to IV-tuning, so V2 has its own
recipe (the adapters still follow each residual, on the full grid) and reuses Swin's stage loop and per-stage
internal prompt unchanged: timm's V2 stages also run "downsample, then blocks" on NHWC maps.
"""

from __future__ import annotations

from typing import Any

import torch
from timm.models.swin_transformer_v2 import SwinTransformerV2, SwinTransformerV2Block

from .swin import SwinFamily


def _attn(blk: SwinTransformerV2Block, x: torch.Tensor, hw: tuple[int, int], **_: Any) -> torch.Tensor:
    b, n, c = x.shape
    x = x.reshape(b, hw[0], hw[1], c)
    x = x + blk.drop_path1(blk.norm1(blk._attn(x)))  # post-norm: the norm is on the branch output
    return x.reshape(b, n, c)


def _mlp(blk: SwinTransformerV2Block, x: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
    return x + blk.drop_path2(blk.norm2(blk.mlp(x)))


class SwinV2Family(SwinFamily):
    """Swin V2: Swin's stage loop and outputs with the post-norm block recipe."""


SWINV2 = SwinV2Family.of("swinv2", SwinTransformerV2, SwinTransformerV2Block, _attn, _mlp, strict_img_size=False)
