"""The IV-tuning input side: IR patch embedding and the prompt stem (shared LN + EMPG).

docs/METHOD.md sections 3.6-3.8.
"""

from __future__ import annotations

import torch
from torch import nn

from .ops import HybridOperation, SimAM, grid_to_tokens, tokens_to_grid


class EMPG(nn.Module):
    """External Modal Prompt Generator: conv branch for visible texture, SimAM branch for thermal saliency.

    ``EMPG([F_v; F_r]) = out(HO(conv_v(F_v)) + SimAM(conv_r(F_r)))``; ``3rC + C + 2r + HO(r)`` parameters.
    """

    def __init__(self, dim: int, hidden: int = 8) -> None:
        super().__init__()
        self.vis_proj = nn.Conv2d(dim, hidden, 1)
        self.ir_proj = nn.Conv2d(dim, hidden, 1)
        self.vis_mix = HybridOperation(hidden)
        self.ir_attn = SimAM()
        self.out = nn.Conv2d(hidden, dim, 1)
        # authors' init: every EMPG tensor with more than one dimension Xavier-uniform, biases/BN PyTorch default
        for p in self.parameters():
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)

    def forward(self, vis: torch.Tensor, ir: torch.Tensor) -> torch.Tensor:
        return self.out(self.vis_mix(self.vis_proj(vis)) + self.ir_attn(self.ir_proj(ir)))

    def zero_output(self) -> None:
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)


class PromptStem(nn.Module):
    """``P0 = EMPG([LN_p(X_v); LN_p(X_r)])``: one LayerNorm shared by both modalities, then the EMPG."""

    def __init__(self, dim: int, hidden: int = 8) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.empg = EMPG(dim, hidden)

    def forward(self, vis_tokens: torch.Tensor, ir_tokens: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
        """(B, N, C) visible and IR patch tokens -> (B, N, C) prompt."""
        vis = tokens_to_grid(self.norm(vis_tokens), hw)
        ir = tokens_to_grid(self.norm(ir_tokens), hw)
        return grid_to_tokens(self.empg(vis, ir))

    def zero_output(self) -> None:
        self.empg.zero_output()


class IRPatchEmbed(nn.Module):
    """A new, randomly initialised patch embedding for the (3-channel) IR image, same geometry as the visible one.

    Output is NHWC so the grid (h, w) is explicit. ViT/EVA: conv only (``3p^2C + C``); Swin: conv + LN (``51C``).
    """

    def __init__(
        self,
        dim: int,
        patch_size: tuple[int, int],
        in_chans: int = 3,
        norm: bool = False,
        norm_eps: float = 1e-5,
    ) -> None:
        super().__init__()
        self.patch_size = tuple(patch_size)
        self.proj = nn.Conv2d(in_chans, dim, kernel_size=self.patch_size, stride=self.patch_size)
        self.norm = nn.LayerNorm(dim, eps=norm_eps) if norm else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.proj(x).permute(0, 2, 3, 1))
