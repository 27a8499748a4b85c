"""The SAM 2 Hiera family (timm ``HieraDet``: SAM 2's image encoder), docs/METHOD.md sections 4.3 and 8.

Hiera (Ryali et al., ICML 2023, arXiv 2306.00989) as SAM 2 uses it (Ravi et al., 2024, arXiv 2408.00714): an
overlapping 7x7 / stride-4 patch embedding, a windowed position embedding, then one flat sequence of
``MultiScaleBlock`` s in four stages. There is no patch-merging layer: the first block of each later stage is the
stage transition. Its shortcut is ``pool(proj(norm1(x)))`` (a linear widening, then a 2x2 max-pool) and its
attention pools the queries the same way, so the token grid halves and the width doubles inside that block.

IV-tuning on it (docs/METHOD.md section 4.3):

- The recipe restates ``MultiScaleBlock.forward`` in two halves on (B, h*w, C) tokens with the block's own modules
  and timm's window helpers: the adapters after the attention residual already see the new grid and width, and
  they see the whole grid, never the attention windows (window padding stays inside the attention half).
- The internal prompt is per stage, as for Swin: ``P0`` in stage 0; in a later stage, the stage input brought to
  the stage's grid and width by the transition block's own shortcut (SAM 2's counterpart of Swin's patch merging),
  fixed for every block of the stage.
- The IR patch embedding copies the visible convolution's geometry (kernel 7, stride 4, padding 3).
- Inputs must be multiples of the patch stride times the windowed position embedding (4 x 8 = 32 for SAM 2): timm
  tiles that 8x8 table over the stage-0 grid, so no other size runs; the error names the padded size.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from timm.models.hieradet_sam2 import HieraDet, MultiScaleBlock, _calc_pad, window_partition, window_unpartition
from torch import nn

from .family import BlockHost, Geometry, StagedFamily

Grid = tuple[int, int]


def _pooled(blk: MultiScaleBlock, hw: Grid) -> Grid:
    """The block's output grid: its max-pool (kernel = stride = q_stride, floor) halves the grid at a stage entry."""
    if blk.pool is None:
        return hw
    return hw[0] // blk.q_stride[0], hw[1] // blk.q_stride[1]


def _shortcut(blk: MultiScaleBlock, x: torch.Tensor, x_norm: torch.Tensor) -> torch.Tensor:
    """The attention residual's shortcut on NHWC maps: ``x``, or ``pool(proj(norm1(x)))`` where the width changes."""
    if blk.dim == blk.dim_out:
        return x
    s = blk.proj(x_norm)
    if blk.pool is not None:
        s = blk.pool(s.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
    return s


def stage_input(blk: MultiScaleBlock, x: torch.Tensor, hw: Grid) -> torch.Tensor:
    """(B, h*w, C) tokens entering a stage -> the stage input on the stage's grid and width: the internal prompt.

    ``blk`` is the stage's first block (a wrapper delegates the attributes read here to it).
    """
    b, _, c = x.shape
    x = x.reshape(b, *hw, c)
    return _shortcut(blk, x, blk.norm1(x)).flatten(1, 2)


def _attn(blk: MultiScaleBlock, x: torch.Tensor, hw: Grid, in_hw: Grid | None = None) -> torch.Tensor:
    """(B, h_in*w_in, C_in) -> (B, h*w, C_out); ``hw`` is the output grid, ``in_hw`` the input's (None: the same)."""
    b, _, c = x.shape
    in_hw = hw if in_hw is None else in_hw
    x = x.reshape(b, *in_hw, c)
    x_norm = blk.norm1(x)
    shortcut = _shortcut(blk, x, x_norm)
    y = x_norm
    if blk.is_windowed:  # pad to whole windows, attend per window; the queries (and windows) may be pooled
        _, _, pad_h, pad_w = _calc_pad(*in_hw, blk.window_size)
        y = window_partition(F.pad(y, (0, 0, 0, pad_w, 0, pad_h)), blk.window_size)
    y = blk.attn(y)
    if blk.is_windowed:
        window = blk.window_size
        if blk.q_stride is not None:
            window = (window[0] // blk.q_stride[0], window[1] // blk.q_stride[1])
        hp, wp, _, _ = _calc_pad(*hw, window)
        y = window_unpartition(y, window, (hp, wp))[:, : hw[0], : hw[1], :].contiguous()
    x = shortcut + blk.drop_path1(blk.ls1(y))
    return x.reshape(b, -1, blk.dim_out)


def _mlp(blk: MultiScaleBlock, x: torch.Tensor, hw: Grid) -> torch.Tensor:
    return x + blk.drop_path2(blk.ls2(blk.mlp(blk.norm2(x))))


class ConvIRPatchEmbed(nn.Module):
    """IR patch embedding with the visible convolution's kernel, stride and padding, NHWC output, no norm.

    Hiera's stem is an overlapping 7x7 / stride-4 / padding-3 convolution, which :class:`ivtune.modules.IRPatchEmbed`
    (kernel = stride) cannot express: ``3k^2 C + C`` parameters (k = 7: ``148 C``).
    """

    def __init__(self, visible: nn.Conv2d) -> None:
        super().__init__()
        self.proj = nn.Conv2d(visible.in_channels, visible.out_channels, visible.kernel_size, visible.stride,
                              visible.padding)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).permute(0, 2, 3, 1)


class HieraDetFamily(StagedFamily):
    """SAM 2 Hiera: four stages in one ``blocks`` sequence, an output at each stage end (strides 4 / 8 / 16 / 32)."""

    def stage_blocks(self, model: nn.Module) -> list[tuple[str, nn.Sequential]]:
        return [("blocks", model.blocks)]

    @staticmethod
    def _stages(model: nn.Module) -> list[range]:
        ends = list(model.stage_ends)
        return [range(start, end + 1) for start, end in zip([0] + [e + 1 for e in ends[:-1]], ends, strict=True)]

    def num_stages(self, model: nn.Module) -> int:
        return len(model.stage_ends)

    def output_geometry(self, model: nn.Module, out_indices: list[int]) -> Geometry:
        # from the blocks, not timm's feature_info, whose reductions assume the default patch stride 4 and q_pool 3
        stride, strides = max(self.patch_size(model)), []
        for stage in self._stages(model):
            first = model.blocks[stage.start]
            stride *= max(first.q_stride) if first.pool is not None else 1
            strides.append(stride)
        channels = [int(model.blocks[stage.stop - 1].dim_out) for stage in self._stages(model)]
        return Geometry([channels[i] for i in out_indices], [strides[i] for i in out_indices], None)

    def patch_size(self, model: nn.Module) -> tuple[int, int]:
        return tuple(model.patch_embed.proj.stride)

    def input_multiple(self, model: nn.Module) -> tuple[tuple[int, int], str]:
        (sh, sw), (wh, ww) = self.patch_size(model), model.pos_embed_window.shape[-2:]
        return (sh * wh, sw * ww), (f"{sh * wh}x{sw * ww} (the patch stride {sh}x{sw} times the {wh}x{ww} windowed "
                                    "position embedding tiled over the token grid)")

    def ir_patch_embed(self, model: nn.Module) -> nn.Module:
        return ConvIRPatchEmbed(model.patch_embed.proj)

    def forward(self, backbone: BlockHost, vis: torch.Tensor, ir: torch.Tensor) -> list[torch.Tensor]:
        """Stage by stage: ``z`` = P0 in stage 0, then each stage's input on its own grid and width."""
        m = backbone.model
        x, p0 = self.prompted_stem(backbone, vis, ir)
        b, h, w, c = x.shape
        x = m._pos_embed(x)  # prompt first, then the position embedding, as for ViT / EVA
        outs = {}
        last = max(backbone.out_indices)
        hw = (h, w)
        t = x.reshape(b, h * w, c)  # the wrapped blocks take tokens; the plain ones the NHWC map
        for s, stage in enumerate(self._stages(m)[: last + 1]):
            blocks = [m.blocks[i] for i in stage]
            if not backbone.has_adapters:  # the plain timm blocks take the NHWC map
                for blk in blocks:
                    x = backbone.run_block(blk, x)
                hw = tuple(x.shape[1:3])
            else:
                stage_hw = _pooled(blocks[0], hw)  # only the first block of a stage can pool
                z = p0 if s == 0 else stage_input(blocks[0], t, hw)
                # z is fixed for the stage: its blocks' prompts are computed together, at the stage start
                extras = backbone.prepare_blocks(blocks, z=z, hw=stage_hw)
                for blk, extra in zip(blocks, extras, strict=True):
                    t = backbone.run_block(blk, t, z=z, hw=stage_hw, in_hw=hw, **extra)
                    hw = stage_hw
            if s in backbone.out_indices:
                grid = x if not backbone.has_adapters else t.reshape(b, *hw, -1)
                outs[s] = grid.permute(0, 3, 1, 2).contiguous()
        return [outs[s] for s in backbone.out_indices]


HIERADET = HieraDetFamily.of("hieradet", HieraDet, MultiScaleBlock, _attn, _mlp)
