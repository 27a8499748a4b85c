"""The backbone of a run, built from its ``model:`` section (every task's model builder starts here)."""

from __future__ import annotations

from ..builder import build_backbone
from ..config import ModelConfig


def backbone_from_config(m: ModelConfig):
    """``build_backbone`` with the section's backbone, method and method config, weights, taps and timm kwargs;
    gradient checkpointing and compilation of the blocks switched on when the section asks for them."""
    backbone = build_backbone(
        m.backbone, method=m.method, method_config=m.resolved_method_config(), pretrained=m.pretrained,
        weights=m.weights, out_indices=m.out_indices, **m.timm_kwargs,
    )
    if m.grad_checkpointing:
        backbone.set_grad_checkpointing(True)
    if m.compile:  # every task model's backbone comes from here, so segmentation, SOD and detection all compile
        backbone.compile()
    return backbone
