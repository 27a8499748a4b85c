"""The EVA family (timm ``Eva``: EVA-02 and relatives), docs/METHOD.md section 4.1.

Differs from ViT in two places the shared columnar loop leaves open: ``_pos_embed`` also returns the rotary
embedding (RoPE), which every block takes as a keyword (one per block for ``rope_mixed`` models), and the block
keeps its layer scale as a raw parameter or ``None``.
"""

from __future__ import annotations

from typing import Any

import torch
from timm.models.eva import Eva, EvaBlock
from torch import nn

from .columnar import ColumnarFamily


def _attn(blk: EvaBlock, x: torch.Tensor, hw: tuple[int, int], rope: torch.Tensor | None = None) -> torch.Tensor:
    y = blk.attn(blk.norm1(x), rope=rope)
    if blk.gamma_1 is not None:  # EVA keeps layer scale as a raw parameter or None
        y = blk.gamma_1 * y
    return x + blk.drop_path1(y)


def _mlp(blk: EvaBlock, x: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
    y = blk.mlp(blk.norm2(x))
    if blk.gamma_2 is not None:
        y = blk.gamma_2 * y
    return x + blk.drop_path2(y)


class EvaFamily(ColumnarFamily):
    """EVA: RoPE comes out of the position embedding and goes into every block."""

    def embed_positions(self, model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        return model._pos_embed(x)  # (tokens, rope or None); patch dropout happens inside, on both

    def block_kwargs(self, model: nn.Module, state: torch.Tensor | None, index: int) -> dict[str, Any]:
        per_block = state is not None and getattr(model, "rope_mixed", False)
        return {"rope": state[index] if per_block else state}


EVA = EvaFamily.of("eva", Eva, EvaBlock, _attn, _mlp, dynamic_img_size=True)
