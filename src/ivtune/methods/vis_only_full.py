"""``vis-only-full``: the plain backbone on the visible image alone, fully fine-tuned (the authors' FFT baseline,
docs/METHOD.md section 10, variant (b)); the IR image is ignored."""

from __future__ import annotations

from torch import nn

from ..backbones.base import IVBackbone
from ..backbones.family import Family
from .base import EmptyConfig, Method, register_method, train_everything


def _build(model: nn.Module, family: Family, out_indices: list[int] | None, config: EmptyConfig) -> IVBackbone:
    return IVBackbone(model, family, out_indices, ir_input=False)


VIS_ONLY_FULL = register_method(Method(
    name="vis-only-full",
    description="the plain backbone on the visible image alone, fully fine-tuned (the authors' FFT baseline; the IR "
    "image is ignored)",
    config_cls=EmptyConfig,
    build=_build,
    configure=train_everything,
    trains_backbone=True,
))
