"""Parameter accounting (docs/METHOD.md section 7): trainable vs frozen, and the ratio to the frozen backbone."""

from __future__ import annotations

from torch import nn

from .backbones.base import IVBackbone


def count_parameters(model: nn.Module) -> dict[str, float | int]:
    """Count parameters of any module (a backbone, or a full model with a head).

    Returns:
        ``trainable``, ``frozen``, ``total`` and ``ratio`` = trainable / the pretrained backbone's parameters
        (the timm model without IV modules; for ``iv-tuning`` that is exactly the frozen count). Shared tensors
        count once. Works on meta-device models.
    """
    seen: set[int] = set()
    trainable = frozen = 0
    for p in model.parameters():
        if id(p) in seen:
            continue
        seen.add(id(p))
        if p.requires_grad:
            trainable += p.numel()
        else:
            frozen += p.numel()
    base = sum(_pretrained_backbone_size(m) for m in model.modules() if isinstance(m, IVBackbone))
    if base == 0:
        base = frozen
    return {
        "trainable": trainable,
        "frozen": frozen,
        "total": trainable + frozen,
        "ratio": trainable / base if base else float("nan"),
    }


def _pretrained_backbone_size(backbone: IVBackbone) -> int:
    iv = {id(p) for m in backbone.iv_modules() for p in m.parameters()}
    return sum(p.numel() for p in backbone.model.parameters() if id(p) not in iv)
