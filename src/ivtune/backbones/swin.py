"""The Swin family (timm ``SwinTransformer``), docs/METHOD.md sections 4.2 and 8.

timm's Swin block is NHWC and pads windows inside ``_attn`` only, so the recipe reshapes the (B, h*w, C) tokens to
the stage grid and the adapters see the full grid, never windows. The loop runs stage by stage in timm's order
(downsample, then blocks); the internal prompt is the stage input, fixed within a stage (``P0`` alone in stage 0).
"""

from __future__ import annotations

from typing import Any

import torch
from timm.models.swin_transformer import SwinTransformer, SwinTransformerBlock
from torch import nn

from .family import BlockHost, Geometry, StagedFamily


def _attn(blk: SwinTransformerBlock, x: torch.Tensor, hw: tuple[int, int], **_: Any) -> torch.Tensor:
    b, n, c = x.shape
    x = x.reshape(b, hw[0], hw[1], c)
    x = x + blk.drop_path1(blk._attn(blk.norm1(x)))
    return x.reshape(b, n, c)


def _mlp(blk: SwinTransformerBlock, x: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
    return x + blk.drop_path2(blk.mlp(blk.norm2(x)))


class SwinFamily(StagedFamily):
    """Swin: stages of blocks over a shrinking grid, outputs read from timm's ``feature_info``."""

    def stage_blocks(self, model: nn.Module) -> list[tuple[str, nn.Sequential]]:
        return [(f"layers.{s}.blocks", stage.blocks) for s, stage in enumerate(model.layers)]

    def num_stages(self, model: nn.Module) -> int:
        return len(model.layers)

    def output_geometry(self, model: nn.Module, out_indices: list[int]) -> Geometry:
        info = model.feature_info
        return Geometry([info[i]["num_chs"] for i in out_indices], [info[i]["reduction"] for i in out_indices], None)

    def forward(self, backbone: BlockHost, vis: torch.Tensor, ir: torch.Tensor) -> list[torch.Tensor]:
        m = backbone.model
        x, p0 = self.prompted_stem(backbone, vis, ir)
        outs = {}
        last = max(backbone.out_indices)
        for s, stage in enumerate(m.layers[: last + 1]):
            x = stage.downsample(x)
            b, h, w, c = x.shape
            t = x.reshape(b, h * w, c)
            z = p0 if s == 0 else t
            # z is fixed for the stage: its blocks' prompts are computed together, at the stage start
            extras = backbone.prepare_blocks(stage.blocks, z=z, hw=(h, w)) if backbone.has_adapters else None
            for i, blk in enumerate(stage.blocks):
                if extras is not None:
                    t = backbone.run_block(blk, t, z=z, hw=(h, w), **extras[i])
                else:  # the plain timm block takes the NHWC grid
                    t = backbone.run_block(blk, t.reshape(b, h, w, c)).reshape(b, h * w, c)
            x = t.reshape(b, h, w, c)
            if s in backbone.out_indices:
                outs[s] = x.permute(0, 3, 1, 2).contiguous()
        return [outs[s] for s in backbone.out_indices]


SWIN = SwinFamily.of("swin", SwinTransformer, SwinTransformerBlock, _attn, _mlp, strict_img_size=False)
