"""Read the patch tokens of every block of an :class:`~ivtune.backbones.base.IVBackbone`, from outside it.

Forward hooks on the blocks of the family's block containers (``family.stage_blocks``), registered and removed by
:class:`BlockTokenReader`; the backbone's code is not touched. A hook sees the block's output after both residuals,
which is what the spectrum of a block means here (the hazards of hooks for *adapters*, docs/METHOD.md section 4,
do not apply to reading). Every layout the families produce is handled by one rule:

- ``(B, h, w, C)``: a plain timm Swin block (NHWC), the grid is the shape;
- ``(B, P + h*w, C)``: a ViT / EVA block (``P`` prefix tokens first: class, registers) or any wrapped block; the
  grid comes from the ``hw`` keyword wrappers take, else it is the patch grid of the input (plain columnar blocks
  never change it). The patch tokens are always the last ``h*w``.

A backbone made of several :class:`IVBackbone` branches (``dual-branch``) is read as the sum of the branches'
tokens at each block, as it sums its outputs level by level.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Any

import torch
from torch import nn

from ..backbones.base import IVBackbone
from ..errors import UnsupportedModelError


@dataclass(frozen=True)
class BlockInfo:
    """One block in forward order: its path (``blocks.11``, ``layers.2.blocks.17``), position and whether it is a
    tap of the backbone (one of the maps the head sees)."""

    label: str
    index: int
    tapped: bool


def branches(backbone: IVBackbone) -> list[IVBackbone]:
    """The backbone and every :class:`IVBackbone` inside it (``dual-branch``'s infrared copy), in module order."""
    return [m for m in backbone.modules() if isinstance(m, IVBackbone)]


def _blocks(backbone: IVBackbone) -> list[tuple[str, nn.Module]]:
    return [(f"{path}.{i}", blk) for path, container in backbone.family.stage_blocks(backbone.model)
            for i, blk in enumerate(container)]


def block_layout(backbone: IVBackbone) -> list[BlockInfo]:
    """Every block of ``backbone`` in forward order, the tapped ones marked.

    Columnar families tap block indices; hierarchical ones (Swin) tap stages, whose output is their last block.
    """
    containers = backbone.family.stage_blocks(backbone.model)
    taps: set[str] = set()
    if backbone.family.hierarchical:
        for s in backbone.out_indices:
            path, container = containers[s]
            taps.add(f"{path}.{len(container) - 1}")
    else:
        path, _ = containers[0]
        taps = {f"{path}.{i}" for i in backbone.out_indices}
    return [BlockInfo(label, k, label in taps) for k, (label, _) in enumerate(_blocks(backbone))]


def patch_tokens(output: torch.Tensor, hw: tuple[int, int] | None) -> tuple[torch.Tensor, tuple[int, int]]:
    """A block output -> its patch tokens ``(B, h*w, C)`` and grid ``(h, w)`` (rules in the module docstring)."""
    if output.ndim == 4:  # NHWC
        b, h, w, c = output.shape
        return output.reshape(b, h * w, c), (h, w)
    if output.ndim != 3 or hw is None:
        raise UnsupportedModelError(f"cannot read patch tokens from a block output of shape {tuple(output.shape)} "
                                    "without its (h, w) grid; expected (B, h, w, C) or (B, P + h*w, C).")
    n = hw[0] * hw[1]
    if output.shape[1] < n:
        raise UnsupportedModelError(f"a block output of shape {tuple(output.shape)} has fewer tokens than its "
                                    f"{hw[0]}x{hw[1]} grid.")
    return output[:, output.shape[1] - n:], (int(hw[0]), int(hw[1]))


def tokens_to_map(tokens: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
    """``(B, h*w, C)`` -> ``(B, C, h, w)``."""
    b, _, c = tokens.shape
    return tokens.transpose(1, 2).reshape(b, c, *hw)


class BlockTokenReader:
    """Collects the patch tokens of chosen blocks during :meth:`read`; hooks live only inside ``with``.

    Args:
        backbone: the backbone to read.
        labels: block labels to keep (default: every block). Blocks after the last tap are not run by the
            backbone's loop, so they never appear in a result.
    """

    def __init__(self, backbone: IVBackbone, labels: list[str] | None = None) -> None:
        self.backbone = backbone
        self.labels = set(labels) if labels is not None else None
        self._handles: list[Any] = []
        self._grid: tuple[int, int] | None = None
        self._out: dict[str, tuple[torch.Tensor, tuple[int, int]]] = {}

    def modules_at(self, label: str) -> list[nn.Module]:
        """The block module at ``label`` in every branch (one per branch)."""
        return [blk for branch in branches(self.backbone) for lab, blk in _blocks(branch) if lab == label]

    def __enter__(self) -> BlockTokenReader:
        for branch in branches(self.backbone):
            for label, blk in _blocks(branch):
                if self.labels is None or label in self.labels:
                    self._handles.append(blk.register_forward_hook(partial(self._hook, label), with_kwargs=True))
        return self

    def __exit__(self, *exc: Any) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()

    def _hook(self, label: str, module: nn.Module, args: tuple, kwargs: dict[str, Any], output: Any) -> None:
        tokens, grid = patch_tokens(output, kwargs.get("hw") or self._grid)
        tokens = tokens.detach()
        if label in self._out:  # a second branch at the same block: the backbone sums branches
            prev, prev_grid = self._out[label]
            if prev_grid != grid or prev.shape != tokens.shape:
                raise UnsupportedModelError(f"the branches disagree at {label}: {tuple(prev.shape)} on a {prev_grid} "
                                            f"grid and {tuple(tokens.shape)} on a {grid} grid.")
            tokens = prev + tokens
        self._out[label] = (tokens, grid)

    def read(self, vis: torch.Tensor, ir: torch.Tensor) -> dict[str, tuple[torch.Tensor, tuple[int, int]]]:
        """Run the backbone's blocks on one batch; ``{label: (tokens (B, h*w, C), (h, w))}`` in forward order."""
        if not self._handles:
            raise RuntimeError("BlockTokenReader.read must be called inside `with BlockTokenReader(...)`")
        ph, pw = self.backbone.patch_size
        self._grid = (vis.shape[-2] // ph, vis.shape[-1] // pw)  # the patch grid plain columnar blocks keep
        self._out = {}
        with torch.no_grad():
            self.backbone.forward_intermediates(vis, ir)
        out, self._out = self._out, {}
        return out
