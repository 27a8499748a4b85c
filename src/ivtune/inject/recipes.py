"""Residual recipes: timm's block forward restated in two halves, so adapters can sit after each residual.

One recipe per block class, matched by exact type: a subclass may change the residual structure (e.g. ViT's
``ResPostBlock`` normalises after the residual), so it must get its own recipe rather than inherit a wrong one.
Recipes reuse the block's own submodules; no backbone code is copied. All take and return (B, P + h*w, C) tokens.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from timm.models.eva import EvaBlock
from timm.models.swin_transformer import SwinTransformerBlock
from timm.models.vision_transformer import Block
from torch import nn

ResidualFn = Callable[..., torch.Tensor]


@dataclass(frozen=True)
class Recipe:
    """How to run the attention half and the MLP half of one block family."""

    family: str
    attn: ResidualFn  # (block, tokens, hw, **block_kwargs) -> tokens
    mlp: ResidualFn  # (block, tokens, hw) -> tokens


def _vit_attn(blk: Block, x: torch.Tensor, hw: tuple[int, int], **_: Any) -> torch.Tensor:
    return x + blk.drop_path1(blk.ls1(blk.attn(blk.norm1(x))))


def _vit_mlp(blk: Block, x: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
    return x + blk.drop_path2(blk.ls2(blk.mlp(blk.norm2(x))))


def _eva_attn(blk: EvaBlock, x: torch.Tensor, hw: tuple[int, int], rope: torch.Tensor | None = None) -> torch.Tensor:
    y = blk.attn(blk.norm1(x), rope=rope)
    if blk.gamma_1 is not None:  # EVA keeps layer scale as a raw parameter or None
        y = blk.gamma_1 * y
    return x + blk.drop_path1(y)


def _eva_mlp(blk: EvaBlock, x: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
    y = blk.mlp(blk.norm2(x))
    if blk.gamma_2 is not None:
        y = blk.gamma_2 * y
    return x + blk.drop_path2(y)


def _swin_attn(blk: SwinTransformerBlock, x: torch.Tensor, hw: tuple[int, int], **_: Any) -> torch.Tensor:
    # timm's Swin block is NHWC; windows are padded inside _attn only, so adapters see the full stage grid
    b, n, c = x.shape
    x = x.reshape(b, hw[0], hw[1], c)
    x = x + blk.drop_path1(blk._attn(blk.norm1(x)))
    return x.reshape(b, n, c)


def _swin_mlp(blk: SwinTransformerBlock, x: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
    return x + blk.drop_path2(blk.mlp(blk.norm2(x)))


RECIPES: dict[type[nn.Module], Recipe] = {
    Block: Recipe("vit", _vit_attn, _vit_mlp),
    EvaBlock: Recipe("eva", _eva_attn, _eva_mlp),
    SwinTransformerBlock: Recipe("swin", _swin_attn, _swin_mlp),
}


def supported_block_names() -> list[str]:
    return [cls.__name__ for cls in RECIPES]


def recipe_for(block: nn.Module) -> Recipe | None:
    """The recipe for ``block``'s exact class, or None."""
    return RECIPES.get(type(block))
