"""The dual-branch baseline: two full copies of the timm backbone, one per modality, summed at every level."""

from __future__ import annotations

import copy

import torch
from torch import nn

from .base import IVBackbone
from .families import Family


class DualBranchBackbone(IVBackbone):
    """Visible branch (this module's own ``model``) + infrared branch (``ir_branch``, a deep copy made after the
    pretrained weights were loaded), both plain timm models; ``forward`` returns ``vis_i + ir_i`` per level.

    Same ``out_channels`` / ``strides`` as the single backbone, so any head fits. No IV modules: the method decides
    which of the two copies train (``dual-branch``: both).
    """

    def __init__(
        self, model: nn.Module, family: Family, out_indices: list[int] | tuple[int, ...] | None = None
    ) -> None:
        ir_model = copy.deepcopy(model)  # before IVBackbone touches anything: both copies start identical
        super().__init__(model, family, out_indices, adapters=False, ir_input=False)
        self.ir_branch = IVBackbone(ir_model, family, self.out_indices, adapters=False, ir_input=False)

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        super().set_grad_checkpointing(enable)
        self.ir_branch.set_grad_checkpointing(enable)

    def forward_intermediates(self, vis: torch.Tensor, ir: torch.Tensor) -> list[torch.Tensor]:
        """Per-level sums of the two branches' raw taps."""
        self.check_inputs(vis, ir)
        if ir.shape[1] == 1:
            ir = ir.expand(-1, 3, -1, -1)
        v = super().forward_intermediates(vis, ir)
        r = self.ir_branch.forward_intermediates(ir, ir)  # a branch without IR input reads only its first argument
        return [a + b for a, b in zip(v, r, strict=True)]
