"""``full``: the IV-tuning network with every parameter trainable (single-backbone full fine-tuning with early IR
fusion, docs/METHOD.md section 10, variant (a))."""

from __future__ import annotations

from dataclasses import replace

from .base import register_method, train_everything
from .iv_tuning import IV_TUNING

# the same network, config and build as iv-tuning: only what trains differs
FULL = register_method(replace(
    IV_TUNING,
    name="full",
    description="the IV-tuning network with every parameter trainable (full fine-tuning)",
    configure=train_everything,
    trains_backbone=True,
))
