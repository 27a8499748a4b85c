"""``frozen``: the frozen backbone with the IV-tuning IR entry only (IR patch embedding + prompt stem), no block
modules: what the input-side prompt alone achieves (docs/METHOD.md sections 3.6-3.8)."""

from __future__ import annotations

from dataclasses import dataclass

from .base import IREntryConfig, Method, ir_entry_build, register_method, train_added_modules


@dataclass(frozen=True, kw_only=True)
class FrozenConfig(IREntryConfig):
    """``empg_hidden`` and ``init`` of the IR entry; no in-block hyperparameters."""


FROZEN = register_method(Method(
    name="frozen",
    description="frozen backbone; only the IR patch embed and prompt stem train (no block modules)",
    config_cls=FrozenConfig,
    build=ir_entry_build(),  # no block wrapper
    configure=train_added_modules,
))
