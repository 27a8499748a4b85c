"""The forward loop shared by the columnar families (ViT / DINOv2, EVA-02): docs/METHOD.md sections 4.1 and 8.

The loop owns the order of timm's modules (patch embed -> add the prompt -> position embedding -> blocks -> strip
the prefix tokens) so that the internal prompt ``z`` and the grid ``(h, w)`` reach every block as explicit
arguments. What differs between ViT and EVA (how positions are embedded, RoPE per block) is two small hooks.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from ..errors import UnsupportedModelError
from .family import BlockHost, Family, Geometry
from .pyramid import PYRAMID_STRIDES, SimplePyramid


def evenly_spaced_indices(depth: int, n: int = 4) -> list[int]:
    """``n`` block indices ending at the last block, e.g. depth 12 -> [2, 5, 8, 11]."""
    return [max(round((k + 1) * depth / n) - 1, 0) for k in range(n)]


class ColumnarFamily(Family):
    """A plain ViT-style model: one ``blocks`` sequence, prefix tokens, four taps resized into a pseudo-pyramid."""

    def stage_blocks(self, model: nn.Module) -> list[tuple[str, nn.Sequential]]:
        return [("blocks", model.blocks)]

    def num_prefix_tokens(self, model: nn.Module) -> int:
        return int(getattr(model, "num_prefix_tokens", 0))

    def check_out_indices(self, model: nn.Module, out_indices: Sequence[int] | None) -> list[int]:
        n = len(model.blocks)
        if out_indices is None:
            return evenly_spaced_indices(n)
        idx = self._indices_in_range(out_indices, n, "block")
        if len(idx) != len(PYRAMID_STRIDES):
            raise UnsupportedModelError(
                f"a {self.name} backbone needs exactly 4 out_indices for the x4/x2/x1/x0.5 pyramid, got {idx}; "
                f"e.g. {evenly_spaced_indices(n)}."
            )
        return idx

    def output_geometry(self, model: nn.Module, out_indices: list[int]) -> Geometry:
        dim = model.patch_embed.proj.out_channels
        return Geometry([dim] * len(out_indices), list(PYRAMID_STRIDES), SimplePyramid())

    # ------------------------------------------------------------------ family hooks
    @abstractmethod
    def embed_positions(self, model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, Any]:
        """Prefix tokens + position embedding on the prompted patch tokens -> (tokens, state for the blocks)."""

    def block_kwargs(self, model: nn.Module, state: Any, index: int) -> dict[str, Any]:
        """Extra keyword arguments of block ``index`` (e.g. EVA's RoPE) from :meth:`embed_positions`' state."""
        return {}

    # ------------------------------------------------------------------ the loop
    def forward(self, backbone: BlockHost, vis: torch.Tensor, ir: torch.Tensor) -> list[torch.Tensor]:
        """The prompt is added before the prefix tokens and position embedding; z = the previous block's patches."""
        m = backbone.model
        b = vis.shape[0]
        x = m.patch_embed(vis)
        if x.ndim == 4:  # dynamic_img_size: NHWC
            hw = (x.shape[1], x.shape[2])
        else:  # fixed size: (B, N, C)
            hw = tuple(m.patch_embed.dynamic_feat_size(tuple(vis.shape[-2:])))
        c = x.shape[-1]
        p0 = backbone.input_prompt(x.reshape(b, -1, c), ir, hw)
        if p0 is not None:
            x = x + p0.reshape(x.shape)
        x, state = self.embed_positions(m, x)
        x = m.norm_pre(x)
        npt = backbone.num_prefix_tokens
        z = p0
        taps = []
        last = max(backbone.out_indices)
        blocks = m.blocks[: last + 1]
        extras = backbone.prepare_blocks(blocks)  # every block's adapters prepared at once (z differs per block)
        for i, blk in enumerate(blocks):
            x = backbone.run_block(blk, x, z=z, hw=hw, num_prefix_tokens=npt, **extras[i],
                                   **self.block_kwargs(m, state, i))
            z = x[:, npt:]  # this block's patch tokens are the next block's internal prompt
            if i in backbone.out_indices:
                taps.append((i, z))
        grid = {i: t.transpose(1, 2).reshape(b, c, *hw) for i, t in taps}
        return [grid[i] for i in backbone.out_indices]
