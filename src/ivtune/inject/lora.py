"""LoRA (Hu et al., ICLR 2022, arXiv 2106.09685) on the attention projections of every block.

``LoRALinear`` wraps a frozen ``nn.Linear``: ``W x + b + (alpha / r) B A x`` with ``B`` zero-initialised (the
wrapped layer's output is unchanged at the start). ``LoRABlock`` swaps the query/key/value projection(s) and the
output projection of the block's attention for LoRA layers and runs the block through its residual recipe.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import UnsupportedModelError
from .recipes import Recipe
from .wrappers import BlockWrapper


class LoRAUpdate(nn.Module):
    """The low-rank pair: ``A`` (r, in) Kaiming-uniform, ``B`` (out, r) zeros; ``forward(x) = scale * B A x``."""

    def __init__(self, in_features: int, out_features: int, rank: int = 8, alpha: float = 8.0) -> None:
        super().__init__()
        if rank < 1:
            raise UnsupportedModelError(f"LoRA rank must be >= 1, got {rank}.")
        self.lora_A = nn.Parameter(torch.empty(rank, in_features))
        self.lora_B = nn.Parameter(torch.zeros(out_features, rank))
        self.scale = alpha / rank
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(F.linear(x, self.lora_A), self.lora_B) * self.scale

    def zero_output(self) -> None:
        nn.init.zeros_(self.lora_B)


class LoRALinear(nn.Module):
    """A frozen ``nn.Linear`` (kept as ``base``, so it can be unwrapped) plus a :class:`LoRAUpdate`."""

    def __init__(self, base: nn.Linear, rank: int = 8, alpha: float = 8.0) -> None:
        super().__init__()
        self.base = base
        self.lora = LoRAUpdate(base.in_features, base.out_features, rank, alpha)

    @property
    def weight(self) -> torch.Tensor:  # callers that read the layer's tensors see the frozen ones
        return self.base.weight

    @property
    def bias(self) -> torch.Tensor | None:
        return self.base.bias

    @property
    def in_features(self) -> int:
        return self.base.in_features

    @property
    def out_features(self) -> int:
        return self.base.out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base(x) + self.lora(x)


def _attention_targets(attn: nn.Module) -> list[str]:
    """Names of the attention's q/k/v and output projections: fused ``qkv`` or EVA's ``q_proj/k_proj/v_proj``."""
    if isinstance(getattr(attn, "qkv", None), nn.Linear):
        names = ["qkv"]
    else:
        names = [n for n in ("q_proj", "k_proj", "v_proj") if isinstance(getattr(attn, n, None), nn.Linear)]
    return names + ["proj"] if names and isinstance(getattr(attn, "proj", None), nn.Linear) else []


class LoRABlock(BlockWrapper):
    """The frozen block, its attention's projections LoRA-wrapped, run through its residual recipe."""

    def __init__(self, block: nn.Module, recipe: Recipe, dim: int, rank: int = 8, alpha: float = 8.0) -> None:
        super().__init__(block, recipe)
        attn = block.attn
        targets = _attention_targets(attn)
        if not targets:
            raise UnsupportedModelError(
                f"LoRA found no nn.Linear qkv (or q_proj/k_proj/v_proj) and proj in {type(attn).__name__}; "
                "supported attentions: timm's Attention, EvaAttention, WindowAttention."
            )
        if getattr(attn, "q_bias", None) is not None:
            # EVA's fused qkv with a separate q/v bias calls F.linear(x, qkv.weight, bias), bypassing the module;
            # timm's own "bias separate" path calls qkv(x) then adds the same bias: identical output, LoRA applies
            attn.qkv_bias_separate = True
        for name in targets:
            setattr(attn, name, LoRALinear(getattr(attn, name), rank, alpha))
        self.targets = tuple(targets)

    # forward: BlockWrapper's (the block's own residuals; its attention's projections are the LoRA-wrapped ones)

    def iv_modules(self) -> list[nn.Module]:
        return [getattr(self.block.attn, n).lora for n in self.targets]
