"""``dual-branch``: two full copies of the pretrained backbone, one per modality, summed at every output level and
both fully trained (the usual dual-branch design IV-tuning replaces, docs/METHOD.md section 1)."""

from __future__ import annotations

import copy

import torch
from torch import nn

from ..backbones.base import IVBackbone
from ..backbones.family import Family
from .base import EmptyConfig, Method, register_method, train_everything


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
        super().__init__(model, family, out_indices, ir_input=False)
        self.ir_branch = IVBackbone(ir_model, family, self.out_indices, ir_input=False)

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


def _build(model: nn.Module, family: Family, out_indices: list[int] | None, config: EmptyConfig) -> IVBackbone:
    return DualBranchBackbone(model, family, out_indices)


DUAL_BRANCH = register_method(Method(
    name="dual-branch",
    description="two copies of the pretrained backbone (VIS; IR repeated to 3 channels), summed at every output "
    "level, both fully trained",
    config_cls=EmptyConfig,
    build=_build,
    configure=train_everything,
    trains_backbone=True,
))
