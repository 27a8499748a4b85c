"""The backbone of a run, built from its ``model:`` section (every task's model builder starts here)."""

from __future__ import annotations

from ..builder import build_backbone
from ..config import ModelConfig


def backbone_from_config(m: ModelConfig):
    """``build_backbone`` with the section's backbone, method and method config, weights, taps and timm kwargs;
    gradient checkpointing switched on when the section asks for it."""
    backbone = build_backbone(
        m.backbone, method=m.method, method_config=m.resolved_method_config(), pretrained=m.pretrained,
        weights=m.weights, out_indices=m.out_indices, **m.timm_kwargs,
    )
    if m.grad_checkpointing:
        backbone.set_grad_checkpointing(True)
    return backbone
