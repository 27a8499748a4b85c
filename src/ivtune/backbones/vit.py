"""The ViT family (timm ``VisionTransformer``: ViT, DeiT, MAE, DINOv2 with or without registers).

docs/METHOD.md section 4.1. The block recipe restates timm's ``Block`` residuals with the block's own submodules;
the forward loop is the shared columnar one.
"""

from __future__ import annotations

from typing import Any

import torch
from timm.models.vision_transformer import Block, VisionTransformer
from torch import nn

from .columnar import ColumnarFamily


def _attn(blk: Block, x: torch.Tensor, hw: tuple[int, int], **_: Any) -> torch.Tensor:
    return x + blk.drop_path1(blk.ls1(blk.attn(blk.norm1(x))))


def _mlp(blk: Block, x: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
    return x + blk.drop_path2(blk.ls2(blk.mlp(blk.norm2(x))))


class VitFamily(ColumnarFamily):
    """ViT: absolute position embedding, optional patch dropout (refused at build time), no per-block extras."""

    def embed_positions(self, model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, None]:
        return model.patch_drop(model._pos_embed(x)), None


VIT = VitFamily.of("vit", VisionTransformer, Block, _attn, _mlp, dynamic_img_size=True)
