"""AdaptFormer (Chen et al., NeurIPS 2022, arXiv 2205.13535): a bottleneck MLP in parallel with the block's MLP.

``x <- x + mlp(norm2(x)) + s * up(relu(down(norm2(x))))`` after the (unchanged) attention residual; the MLP
residual comes from the block's recipe, so no timm code is restated here.
"""

from __future__ import annotations

import torch
from torch import nn

from .recipes import Recipe
from .wrappers import BlockWrapper


class ParallelAdapter(nn.Module):
    """``s * up(relu(down(x)))``; ``up`` zero-initialised (the block starts as the frozen one), ``down`` as in the
    AdaptFormer code (Kaiming-uniform, zero bias)."""

    def __init__(self, dim: int, bottleneck: int = 64, scale: float = 0.1) -> None:
        super().__init__()
        self.down = nn.Linear(dim, bottleneck)
        self.up = nn.Linear(bottleneck, dim)
        self.scale = scale
        nn.init.kaiming_uniform_(self.down.weight, a=5**0.5)
        nn.init.zeros_(self.down.bias)
        self.zero_output()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.scale * self.up(torch.relu(self.down(x)))

    def zero_output(self) -> None:
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)


class AdaptFormerBlock(BlockWrapper):
    """The frozen block with a :class:`ParallelAdapter` beside its MLP (on every token, prefix tokens included)."""

    def __init__(self, block: nn.Module, recipe: Recipe, dim: int, bottleneck: int = 64, scale: float = 0.1) -> None:
        super().__init__(block, recipe)
        self.adapter = ParallelAdapter(dim, bottleneck, scale)

    def mlp_residual(self, x: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
        # norm2 runs twice (here and in the recipe): the price of not restating the block's MLP residual
        return self.recipe.mlp(self.block, x, hw) + self.adapter(self.block.norm2(x))

    def iv_modules(self) -> list[nn.Module]:
        return [self.adapter]
