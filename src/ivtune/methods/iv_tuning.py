"""``iv-tuning``: the frozen backbone with the IR entry and HA + IPA at both insertion points of every block.

docs/METHOD.md sections 3.4-3.9 (the modules), 4 (where they sit) and 6 (what trains).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

from ..backbones.base import BlockWrapperFactory
from ..inject.wrappers import AdaptedBlock
from .base import IREntryConfig, Method, ir_entry_build, register_method, train_added_modules


@dataclass(frozen=True, kw_only=True)
class IVTuningConfig(IREntryConfig):
    """Hyperparameters of the IV-tuning network (also used by ``full``, which trains the same network in full).

    Attributes:
        adapter_hidden: Hybrid Adapter width ``r`` (64; docs/METHOD.md section 3.4).
        prompt_hidden: Internal Prompt Adapter width (8; section 3.5).
        dropout: dropout inside every Hybrid Adapter, in [0, 1) (0.1 in the authors' code).
        empg_hidden, init: see :class:`~ivtune.methods.base.IREntryConfig`.
    """

    adapter_hidden: int = 64
    prompt_hidden: int = 8
    dropout: float = 0.1

    def _check(self) -> None:
        super()._check()
        self._integer("adapter_hidden", 1)
        self._integer("prompt_hidden", 1)
        self._number("dropout", 0.0, 1.0)


def adapted_block(config: IVTuningConfig) -> BlockWrapperFactory:
    """IV-tuning's wrapper: an :class:`AdaptedBlock` with its two insertion points (HA + IPA) around every block."""
    return partial(AdaptedBlock, adapter_hidden=config.adapter_hidden, prompt_hidden=config.prompt_hidden,
                   dropout=config.dropout)


build_iv_network = ir_entry_build(adapted_block)  # also the network of ``full`` (methods/full.py)


IV_TUNING = register_method(Method(
    name="iv-tuning",
    description="frozen backbone; IR patch embed, prompt stem and HA/IPA in every block train",
    config_cls=IVTuningConfig,
    build=build_iv_network,
    configure=train_added_modules,
))
