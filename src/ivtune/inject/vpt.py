"""Deep visual prompt tuning (VPT-deep, Jia et al., ECCV 2022, arXiv 2203.12119) as a block wrapper.

Every block gets its own ``num_tokens`` learnable tokens, inserted after the prefix tokens (class, registers) of
the block input and dropped from its output, so the next block's prompts replace them. Only for columnar models
(ViT / DINOv2 / EVA-02): Swin's window attention partitions a fixed (h, w) grid, where extra tokens have no place.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from .recipes import Recipe
from .wrappers import BlockWrapper

VPT_FAMILIES = ("vit", "eva")


class PromptTokens(nn.Module):
    """``num_tokens`` learnable (1, n, C) tokens; uniform init as in VPT (``sqrt(6 / (3 p^2 + C))``)."""

    def __init__(self, dim: int, num_tokens: int = 10, patch_size: int = 16) -> None:
        super().__init__()
        self.tokens = nn.Parameter(torch.empty(1, num_tokens, dim))
        bound = math.sqrt(6.0 / float(3 * patch_size * patch_size + dim))
        nn.init.uniform_(self.tokens, -bound, bound)

    def forward(self, batch: int) -> torch.Tensor:
        return self.tokens.expand(batch, -1, -1)


class VPTBlock(BlockWrapper):
    """``x -> drop_prompts(block([prefix; prompts; patches]))``; the block itself is untouched and frozen."""

    def __init__(self, block: nn.Module, recipe: Recipe, dim: int, num_tokens: int = 10, patch_size: int = 16) -> None:
        super().__init__(block, recipe)
        self.prompts = PromptTokens(dim, num_tokens, patch_size)

    def residuals(self, x: torch.Tensor, hw: tuple[int, int], num_prefix_tokens: int = 0,
                  rope: torch.Tensor | None = None, **block_kwargs: Any) -> torch.Tensor:
        """x: (B, P + h*w, C) -> same shape: the prompts join the tokens for the block and leave after it."""
        n = self.prompts.tokens.shape[1]
        p = num_prefix_tokens
        x = torch.cat([x[:, :p], self.prompts(x.shape[0]).to(x.dtype), x[:, p:]], dim=1)
        if rope is not None:
            # EVA rotates every token after its prefix tokens: give the prompts the identity rotation (sin 0, cos 1)
            # so they carry no position and the patch tokens keep theirs
            sin, cos = rope.chunk(2, -1)
            shape = (*rope.shape[:-2], n, sin.shape[-1])
            rope = torch.cat([torch.cat([sin.new_zeros(shape), sin], -2), torch.cat([cos.new_ones(shape), cos], -2)],
                             -1)
            block_kwargs["rope"] = rope
        x = super().residuals(x, hw, **block_kwargs)
        return torch.cat([x[:, :p], x[:, p + n:]], dim=1)

    def iv_modules(self) -> list[nn.Module]:
        return [self.prompts]
