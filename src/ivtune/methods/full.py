"""``full``: the IV-tuning network with every parameter trainable (single-backbone full fine-tuning with early IR
fusion, docs/METHOD.md section 10, variant (a))."""

from __future__ import annotations

from .base import Method, register_method, train_everything
from .iv_tuning import IVTuningConfig, build_iv_network

FULL = register_method(Method(
    name="full",
    description="the IV-tuning network with every parameter trainable (full fine-tuning)",
    config_cls=IVTuningConfig,
    build=build_iv_network,
    configure=train_everything,
    trains_backbone=True,
))
