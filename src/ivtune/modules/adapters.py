"""Hybrid Adapter, Internal Prompt Adapter and the insertion point that pairs them.

docs/METHOD.md sections 3.4, 3.5 and 3.9.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .ops import SFT, HybridOperation, SimAM


def _init_linear(layer: nn.Linear) -> None:
    # SOD/EVA path of the authors' code: trunc-normal 0.02, zero bias (docs/METHOD.md section 6)
    nn.init.trunc_normal_(layer.weight, std=0.02)
    nn.init.zeros_(layer.bias)


class HybridAdapter(nn.Module):
    """``HA(X) = X + up(drop(GELU(HO(down(SFT(X))))))`` with a 3x3 token-grid mixing inside (133C + 8,672 params)."""

    def __init__(self, dim: int, hidden: int = 64, dropout: float = 0.1) -> None:
        super().__init__()
        self.sft = SFT(dim)
        self.down = nn.Linear(dim, hidden)
        self.mix = HybridOperation(hidden)
        self.act = nn.GELU()
        self.drop = nn.Dropout(dropout)
        self.up = nn.Linear(hidden, dim)
        _init_linear(self.down)
        _init_linear(self.up)

    def forward(self, x: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
        d = self.down(self.sft(x))
        d = self.mix.forward_tokens(d, hw)
        return x + self.up(self.drop(self.act(d)))

    def zero_output(self) -> None:
        """Make the adapter an identity (tests and ablations; the method itself has no zero-init)."""
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)


class InternalPromptAdapter(nn.Module):
    """Turns internal-prompt tokens ``Z`` into an additive prompt ``GELU(up(d) * s + t)``; no residual (23C + 8)."""

    def __init__(self, dim: int, hidden: int = 8) -> None:
        super().__init__()
        self.sft = SFT(dim)
        self.down = nn.Linear(dim, hidden)
        self.attn = SimAM()
        self.act = nn.GELU()
        self.up = nn.Linear(hidden, dim)
        self.scale = nn.Parameter(torch.ones(dim))
        self.shift = nn.Parameter(torch.zeros(dim))
        _init_linear(self.down)
        _init_linear(self.up)

    def forward(self, z: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
        d = self.down(self.sft(z))
        d = self.act(self.attn.forward_tokens(d))
        # (W d + b) * s + t folded into one linear layer: saves a full-size product and its stored activation
        return self.act(F.linear(d, self.up.weight * self.scale[:, None], self.up.bias * self.scale + self.shift))

    def zero_output(self) -> None:
        # GELU(0 * s + t) with t = 0 is exactly 0
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)


class InsertionPoint(nn.Module):
    """One insertion point of a block: ``x <- HA(x) + IPA(z)``.

    Every block owns two of these (after the attention residual and after the MLP residual), never shared:
    only separate modules reproduce the published parameter counts (docs/METHOD.md section 5).
    """

    def __init__(self, dim: int, adapter_hidden: int = 64, prompt_hidden: int = 8, dropout: float = 0.1) -> None:
        super().__init__()
        self.adapter = HybridAdapter(dim, adapter_hidden, dropout)
        self.prompt = InternalPromptAdapter(dim, prompt_hidden)

    def forward(self, x: torch.Tensor, z: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
        return self.adapter(x, hw) + self.prompt(z, hw)

    def zero_output(self) -> None:
        self.adapter.zero_output()
        self.prompt.zero_output()
